"""
C{--workers N} as a user runs it: a real C{twistd} parent, its real worker
processes and a real C{redis-server}.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from certificate import Certificate
from redis_server import RedisServer, free_port
from twistd_process import DEADLINE, TWISTD, TwistdServer, eventually, read_until

STARTED = re.compile(rb"worker \d+ started: pid (\d+)")
LISTENING = re.compile(rb"\[worker (\d+)\] \w*Site (?:\(TLS\) )?starting on")


def answering_pid(port: int) -> int:
    """
    @return: The pid in C{/health}, asked on a new connection.
    """
    url = f"http://127.0.0.1:{port}/health"
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        pid: int = json.load(response)["pid"]
        return pid


def pids_answering(port: int, count: int) -> set[int]:
    """
    Ask C{/health} on new connections until C{count} different pids have
    answered (at most 400 times, 10 ms apart). Every request must succeed.
    """
    seen: set[int] = set()
    pause = threading.Event()
    for _ in range(400):
        seen.add(answering_pid(port))
        if len(seen) >= count:
            break
        pause.wait(0.01)
    return seen


def alive(pid: int) -> bool:
    """
    @return: Whether process C{pid} exists and has not ended (a zombie has).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def worker_pids(output: bytes) -> list[int]:
    """
    @return: The pids of the workers the parent says it started, in order.
    """
    return [int(pid) for pid in STARTED.findall(output)]


def listening(output: bytes, count: int) -> bool:
    """
    @return: Whether C{count} workers are serving the port by now.
    """
    return len(set(LISTENING.findall(output))) >= count


def open_stream(port: int) -> socket.socket:
    """
    Open C{/sse} and read up to its greeting.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
    read_until(sock, b"Gotcha")
    return sock


@pytest.fixture
def workers(redis_server: RedisServer) -> Iterator[TwistdServer]:
    """
    C{twistd -n ssedemo --workers 2}, in the foreground.
    """
    args = ["--redis", redis_server.url, "--workers", "2", "--heartbeat", "0"]
    server = TwistdServer(args=[*args, "--log-json", "events.json"])
    server.start()
    try:
        eventually(lambda: listening(server.output, 2), "two workers")
        yield server
    finally:
        server.stop()
        for pid in worker_pids(server.output):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_two_workers_serve_one_port(workers: TwistdServer) -> None:
    """
    Connections to the one port are answered by both workers, children of
    the parent named C{ssedemo-worker}, and the parent alone writes
    C{twistd.pid} and its C{--log-json}.
    """
    assert workers.process is not None
    parent = workers.process.pid
    pids = worker_pids(workers.output)
    assert pids_answering(workers.port, 2) == set(pids)
    assert parent not in pids
    for pid in pids:
        ppid = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]
        assert int(ppid) == parent
        assert Path(f"/proc/{pid}/comm").read_text() == "ssedemo-worker\n"
    assert (workers.workdir / "twistd.pid").read_text().strip() == str(parent)
    # The parent's --log-json has the workers' events too.
    events = [
        json.loads(line.lstrip("\x1e"))
        for line in (workers.workdir / "events.json").read_text().splitlines()
    ]
    starts = {e.get("log_system") for e in events if "starting on" in str(e)}
    assert starts == {f"worker {pid}" for pid in pids}


def streams_on_both_workers(port: int, log: Callable[[], bytes]) -> list[socket.socket]:
    """
    Open streams until both workers serve some (the kernel picks the worker
    of each connection): at most 40, and every worker must have one.
    """
    streams = [open_stream(port) for _ in range(40)]
    for opened in (
        f"[worker {pid}] streams opened".encode() for pid in worker_pids(log())
    ):
        eventually(lambda: opened in log(), "streams on both workers")  # noqa: B023
    return streams


def test_an_event_reaches_the_streams_of_every_worker(workers: TwistdServer) -> None:
    """
    An event published through one worker reaches every stream, on either
    worker, with the same id.
    """
    streams = streams_on_both_workers(workers.port, lambda: workers.output)
    request = urllib.request.Request(
        workers.url + "/publish", data=b"data=across", method="POST"
    )
    with urllib.request.urlopen(request, timeout=DEADLINE) as response:
        event_id = json.load(response)["id"]
    for stream in streams:
        with stream:
            received = read_until(stream, b"data: across\n\n")
            assert f"id: {event_id}\n".encode() in received


def test_a_killed_worker_is_replaced(workers: TwistdServer) -> None:
    """
    After C{kill -9} of a worker the port keeps serving, and the parent
    starts another worker in its place.
    """
    killed, other = worker_pids(workers.output)
    os.kill(killed, signal.SIGKILL)
    eventually(lambda: not alive(killed), "the worker to die")
    # Every request is answered: by the other worker, or already by the
    # new one (forked from the parent, it serves within milliseconds).
    answered = pids_answering(workers.port, 1)
    eventually(lambda: listening(workers.output, 3), "a new worker")
    new = worker_pids(workers.output)[2]
    assert answered <= {other, new}
    assert pids_answering(workers.port, 2) == {other, new}
    assert f"worker {killed} ended (signal 9)".encode() in workers.output


def test_killed_parent_takes_its_workers_along(workers: TwistdServer) -> None:
    """
    When the parent is killed with C{kill -9}, the workers end their
    streams and exit within a few seconds, leaving the port free.
    """
    assert workers.process is not None
    pids = worker_pids(workers.output)
    with open_stream(workers.port) as stream:
        workers.process.kill()
        began = time.monotonic()
        farewell = read_until(stream, b"0\r\n\r\n")
    assert re.search(rb"retry: \d+\n\n\r\n0\r\n\r\n$", farewell), farewell[-80:]
    eventually(lambda: not any(alive(pid) for pid in pids), "the workers to exit")
    assert time.monotonic() - began < 5
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", workers.port), timeout=DEADLINE)


def test_sigterm_to_every_process_stops_each_worker_once(
    workers: TwistdServer,
) -> None:
    """
    systemd's stop signals every process of the unit: each worker gets
    C{SIGTERM} from it and again from the parent. Every stream still gets
    its C{retry:} and its end, every worker exits with status 0, and
    nothing is logged as an error (a worker stopping twice did).
    """
    assert workers.process is not None
    pids = worker_pids(workers.output)
    streams = streams_on_both_workers(workers.port, lambda: workers.output)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    workers.process.send_signal(signal.SIGTERM)
    for stream in streams:
        with stream:
            end = read_until(stream, b"0\r\n\r\n")
            assert re.search(rb"retry: \d+\n\n\r\n0\r\n\r\n$", end)
    # twistd ends by the signal that stopped it, as any process would.
    assert workers.process.wait(timeout=DEADLINE) == -signal.SIGTERM
    workers.stop()  # all output read
    for pid in pids:
        assert f"worker {pid} ended (exit status 0)".encode() in workers.output
    assert b"Traceback" not in workers.output
    assert b"#error]" not in workers.output
    # The parent's --log-json has the workers' log until they have ended.
    events = [
        json.loads(line.lstrip("\x1e"))
        for line in (workers.workdir / "events.json").read_text().splitlines()
    ]
    for pid in pids:
        assert any(
            e.get("log_system") == f"worker {pid}"
            and e["log_format"].startswith("received SIGTERM")
            for e in events
        )
        assert any(
            e["log_format"].startswith("worker {pid} ended") and e["pid"] == pid
            for e in events
        )


def test_sigterm_ends_every_worker_in_daemon_mode(redis_server: RedisServer) -> None:
    """
    In daemon mode, SIGTERM to the parent ends every worker gracefully:
    every stream, on either worker, gets its own C{retry:} and its end;
    then the pidfile is removed.
    """
    with tempfile.TemporaryDirectory() as directory:
        run = Path(directory)
        pidfile, logfile = run / "ssedemo.pid", run / "ssedemo.log"
        started = subprocess.run(
            [
                TWISTD,
                *("--pidfile", str(pidfile), "--logfile", str(logfile)),
                *("ssedemo", "--port", "tcp:0:interface=127.0.0.1"),
                *("--redis", redis_server.url, "--workers", "2"),
            ],
            cwd=run,
            capture_output=True,
            timeout=DEADLINE,
        )
        assert started.returncode == 0, started.stderr
        log = lambda: logfile.read_bytes() if logfile.exists() else b""  # noqa: E731
        parent = int(pidfile.read_text())
        try:
            eventually(lambda: listening(log(), 2), "two workers")
            port = int(
                eventually(lambda: re.search(rb"port (\d+) with", log()), "a port")[1]
            )
            pids = worker_pids(log())
            streams = streams_on_both_workers(port, log)
            os.kill(parent, signal.SIGTERM)
            for stream in streams:
                with stream:
                    end = read_until(stream, b"0\r\n\r\n")
                    assert re.search(rb"retry: \d+\n\n\r\n0\r\n\r\n$", end)
            eventually(lambda: not pidfile.exists(), "the pidfile to go")
            eventually(lambda: not any(alive(pid) for pid in pids), "the workers")
        finally:
            for pid in [parent, *worker_pids(log())]:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        assert b"Server Shut Down" in log()
        for pid in pids:
            assert f"worker {pid} ended (exit status 0)".encode() in log()


def test_workers_without_redis_are_refused() -> None:
    result = subprocess.run(
        [TWISTD, "-n", "ssedemo", "--workers", "2"],
        cwd=tempfile.gettempdir(),
        capture_output=True,
        timeout=DEADLINE,
    )
    assert result.returncode != 0
    assert b"--workers needs --redis" in result.stdout + result.stderr


def curl_health(url: str) -> tuple[str, int]:
    """
    Ask C{/health} with C{curl --http2} over TLS (the test certificate is
    self-signed: not checked) on a new connection.

    @return: The HTTP version used, and the pid that answered.
    """
    result = subprocess.run(
        [
            *("curl", "-sk", "--http2", "--max-time", str(DEADLINE)),
            *("-w", "\n%{http_version}", f"{url}/health"),
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE + 5,
        check=True,
    )
    body, version = result.stdout.rsplit("\n", 1)
    return version, json.loads(body)["pid"]


def test_workers_serve_tls_and_http2(
    redis_server: RedisServer, certificate: Certificate
) -> None:
    """
    C{--workers 2} with an C{ssl:} port: every worker speaks TLS and
    HTTP/2 with the one key and certificate, on the one port, and an event
    published through one reaches an HTTP/2 stream on either.
    """
    args = ["--port", certificate.endpoint(0), "--redis", redis_server.url]
    server = TwistdServer(
        args=[*args, "--workers", "2", "--heartbeat", "0"], default_port=False
    )
    server.start()
    try:
        eventually(lambda: listening(server.output, 2), "two workers")
        url = f"https://127.0.0.1:{server.tls_port}"
        seen: dict[int, str] = {}
        for _ in range(100):
            version, pid = curl_health(url)
            seen[pid] = version
            if len(seen) == 2:
                break
        assert seen == {pid: "2" for pid in worker_pids(server.output)}
        with subprocess.Popen(
            ["curl", "-skN", "--http2", "--max-time", str(DEADLINE), f"{url}/sse"],
            stdout=subprocess.PIPE,
        ) as stream:
            assert stream.stdout is not None
            received = b""
            for line in stream.stdout:
                received += line
                if b"Gotcha" in received:
                    break
            subprocess.run(
                ["curl", "-sk", "--http2", "-d", "data=secure", f"{url}/publish"],
                check=True,
                capture_output=True,
                timeout=DEADLINE,
            )
            for line in stream.stdout:
                if line == b"data: secure\n":
                    break
            else:
                raise AssertionError("the event did not arrive")
            stream.kill()
    finally:
        server.stop()
        for pid in worker_pids(server.output):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_workers_share_a_socket_activated_port(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """
    C{--workers 2} with a C{systemd:} port under C{systemd-socket-activate}:
    the parent takes the socket systemd passed and both workers serve it.
    """
    port = free_port()
    output = tmp_path / "output.log"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [
                "systemd-socket-activate",
                f"--listen=127.0.0.1:{port}",
                "--fdname=ssedemo.socket",
                "--setenv=PYTHONUNBUFFERED=1",
                *(TWISTD, "-n", "--pidfile=", "ssedemo"),
                *("--port", "systemd:domain=INET:index=0"),
                *("--redis", redis_server.url, "--workers", "2"),
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(
            lambda: f"Listening on 127.0.0.1:{port}".encode() in output.read_bytes(),
            "systemd-socket-activate to listen",
        )
        # The first connection starts ssedemo, which serves it.
        pids = pids_answering(port, 2)
        assert pids == set(worker_pids(output.read_bytes()))
        assert process.pid not in pids
        with open_stream(port):
            pass
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=DEADLINE)
        for pid in worker_pids(output.read_bytes()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    log = output.read_bytes()
    assert b"serving 127.0.0.1 port" in log
    for pid in worker_pids(log):
        assert f"worker {pid} ended (exit status 0)".encode() in log
