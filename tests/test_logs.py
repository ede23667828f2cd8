"""
Logs of a real C{twistd ssedemo}: twistd's own log file and the C{--log-json}
one, through a C{SIGUSR1} rotation in daemon mode, and C{--log-json -} in the
foreground.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

from test_plugin import eventually, get, start_daemon
from twistd_process import DEADLINE, TwistdServer


def post_api(port: int, body: dict[str, int]) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=DEADLINE) as response:
        assert response.status == 200


def json_events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def received(path: Path) -> list[object]:
    """
    @return: The bodies of the C{message received} events in C{path}.
    """
    return [
        event["body"]
        for event in json_events(path)
        if event.get("log_format") == "message received: {body}"
    ]


def test_sigusr1_rotates_twistd_log_and_reopens_json_log(tmp_path: Path) -> None:
    """
    A daemon with C{--logfile} and C{--log-json} writes both; on
    C{SIGUSR1} twistd rotates its log (C{ssedemo.log.1}) and the JSON log,
    moved away by the rotator beforehand, is reopened at its path: later
    events, up to the shutdown, land in the new file.
    """
    run = tmp_path / "run"
    run.mkdir()
    pidfile, logfile, events = (
        run / "ssedemo.pid",
        run / "ssedemo.log",
        run / "events.json",
    )
    port, pid = start_daemon(run, "--log-json", "events.json")
    try:
        health = json.loads(get(f"http://127.0.0.1:{port}/health")[1])
        assert health["version"] == "0.1.0"
        assert 0 <= health["uptime"] < DEADLINE
        post_api(port, {"n": 1})
        eventually(lambda: received(events) == [{"n": 1}], "the first JSON event")
        events.rename(run / "events.json.1")
        os.kill(pid, signal.SIGUSR1)
        eventually(lambda: (run / "ssedemo.log.1").exists(), "twistd's rotation")
        eventually(events.exists, "the JSON log reopened")
        post_api(port, {"n": 2})
        eventually(lambda: received(events) == [{"n": 2}], "the second JSON event")
        os.kill(pid, signal.SIGTERM)
        eventually(lambda: not pidfile.exists(), "the pidfile to go")
    finally:
        if pidfile.exists():
            os.kill(pid, signal.SIGKILL)
    assert received(run / "events.json.1") == [{"n": 1}]
    assert b"Site starting on" in (run / "events.json.1").read_bytes()
    assert b"Received SIGTERM" in events.read_bytes()
    assert b"Site starting on" in (run / "ssedemo.log.1").read_bytes()
    assert b"message received" in logfile.read_bytes()


def test_log_json_to_standard_output_in_the_foreground() -> None:
    """
    C{twistd -n ssedemo --log-json -} writes each log event once as a JSON
    line to its standard output, next to twistd's text log; twistd's
    capture of C{print} output (the C{stdout} namespace) sees none of them.
    """
    server = TwistdServer(args=["--log-json", "-"]).start()
    try:
        assert server.health()["status"] == "ok"
    finally:
        server.stop()
    lines = server.output.splitlines()
    events = [json.loads(line) for line in lines if line.startswith(b"{")]
    formats = [event.get("log_format") for event in events]
    assert "open files limit: {limit}" in formats
    assert any(b"GET /health" in json.dumps(event).encode() for event in events)
    assert b"[stdout#" not in server.output
    assert all(event["log_namespace"] != "stdout" for event in events)
    assert len(events) < len(lines)
