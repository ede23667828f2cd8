"""
The twistd plugin, run as a user runs it: real C{twistd} processes, started
from outside the repository.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from twistd_process import DEADLINE, TWISTD, TwistdServer, eventually, read_until

from sse_twisted.fanout import choose_fanout

ROOT = Path(__file__).parent.parent
CACHE_ERROR = b"Unable to write to plugin cache"


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        return response.status, response.read()


def read_stream_until(port: int, marker: bytes) -> bytes:
    """
    Open C{/sse} on a raw socket and read until C{marker}.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        return read_until(sock, marker)


@pytest.fixture
def outside() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def test_twistd_lists_the_plugin(outside: Path) -> None:
    result = subprocess.run(
        [TWISTD, "--help"], cwd=outside, capture_output=True, timeout=DEADLINE
    )
    assert re.search(rb"^\s+ssedemo\s", result.stdout, re.MULTILINE)
    assert CACHE_ERROR not in result.stdout + result.stderr


def test_plugin_help_documents_the_options(outside: Path) -> None:
    result = subprocess.run(
        [TWISTD, "-n", "ssedemo", "--help"],
        cwd=outside,
        capture_output=True,
        timeout=DEADLINE,
    )
    for option in (b"--port", b"--heartbeat", b"--static", b"--max-body", b"--history"):
        assert option in result.stdout


def test_version_is_ssedemos(outside: Path) -> None:
    """
    C{twistd ssedemo --version} prints ssedemo's own version (with Twisted's
    and Klein's) and exits with status 0.
    """
    done = subprocess.run(
        [TWISTD, "ssedemo", "--version"],
        cwd=outside,
        capture_output=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 0, done.stderr
    expected = f"ssedemo {metadata.version('ssedemo')} (Twisted "
    assert done.stdout.decode().startswith(expected)


def test_bad_option_fails_with_a_message(outside: Path) -> None:
    result = subprocess.run(
        [TWISTD, "-n", "ssedemo", "--heartbeat", "-3"],
        cwd=outside,
        capture_output=True,
        timeout=DEADLINE,
    )
    assert result.returncode != 0
    assert b"--heartbeat must be between" in result.stdout + result.stderr


@pytest.mark.parametrize("redis", [False, True], ids=["memory", "redis"])
def test_a_port_in_use_fails_the_start(outside: Path, redis: bool) -> None:
    """
    A C{--port} that another process holds makes twistd exit with an error
    that names it, at once, also with C{--redis} (whose ports accept only
    once the log is read): no server is left running that nobody reaches.
    """
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Redis need not answer: binding comes before the log is read.
        options = ["--heartbeat", "0", "--port", f"tcp:{port}:interface=127.0.0.1"]
        if redis:
            options += ["--redis", "redis://127.0.0.1:1/0"]
        result = subprocess.run(
            [TWISTD, "--pidfile=", "-n", "ssedemo", *options],
            cwd=outside,
            capture_output=True,
            timeout=DEADLINE,
        )
    assert result.returncode != 0
    assert b"Address already in use" in result.stdout + result.stderr


def test_foreground_serves_page_and_stream() -> None:
    server = TwistdServer(args=["--heartbeat", "0.2"]).start()
    try:
        status, page = get(server.url + "/")
        assert (status, b"Send Message" in page) == (200, True)
        received = read_stream_until(server.port, b"Hello hello!")
        assert b"text/event-stream" in received
        assert b'data: {"message": "Gotcha"}' in received
    finally:
        server.stop()
    assert CACHE_ERROR not in server.output
    assert b"streams opened: 1, closed: 0; 1 open" in server.output


def test_custom_static_directory(outside: Path) -> None:
    (outside / "index.html").write_text("<p>mine</p>")
    server = TwistdServer(args=["--static", str(outside)]).start()
    try:
        assert get(server.url + "/") == (200, b"<p>mine</p>")
    finally:
        server.stop()


def log_match(path: Path, pattern: bytes) -> re.Match[bytes] | None:
    return re.search(pattern, path.read_bytes()) if path.exists() else None


def start_daemon(run: Path, *args: str) -> tuple[int, int]:
    """
    Start C{twistd ssedemo} as a daemon from C{run}, with its pidfile and log
    there (C{ssedemo.pid}, C{ssedemo.log}), on a free port of 127.0.0.1.

    @param args: More C{ssedemo} options.
    @return: The port and the daemon's process id.
    """
    pidfile, logfile = run / "ssedemo.pid", run / "ssedemo.log"
    started = subprocess.run(
        [
            TWISTD,
            "--pidfile",
            str(pidfile),
            "--logfile",
            str(logfile),
            "ssedemo",
            "--port",
            "tcp:0:interface=127.0.0.1",
            *args,
        ],
        cwd=run,
        capture_output=True,
        timeout=DEADLINE,
    )
    assert started.returncode == 0, started.stderr
    listening = eventually(
        lambda: log_match(logfile, rb"Site starting on (\d+)"), "the log's port"
    )
    return int(listening.group(1)), int(pidfile.read_text())


def test_daemon_mode(outside: Path) -> None:
    """
    With a pidfile and a logfile, twistd goes to the background, logs to the
    file, serves, and on SIGTERM ends open streams (telling them when to
    come back), removes the pidfile and exits.
    """
    run = outside / "run"
    run.mkdir()
    pidfile, logfile = run / "ssedemo.pid", run / "ssedemo.log"
    port, pid = start_daemon(run)
    try:
        assert get(f"http://127.0.0.1:{port}/")[0] == 200
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
            sock.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
            received = read_until(sock, b"Gotcha")
            os.kill(pid, signal.SIGTERM)
            received += read_until(sock, b"0\r\n\r\n")
        # The stream ends with a retry: delay of its own, then the last chunk.
        assert re.search(rb"retry: \d+\n\n\r\n0\r\n\r\n$", received), received[-80:]
        eventually(lambda: log_match(logfile, rb"Server Shut Down"), "shutdown")
        eventually(lambda: not pidfile.exists(), "the pidfile to go")
    finally:
        if pidfile.exists():
            os.kill(pid, signal.SIGKILL)
    log = logfile.read_bytes()
    assert b"streams opened: 1, closed: 0; 1 open" in log
    assert b"streams opened: 0, closed: 1; 0 open" in log
    assert CACHE_ERROR not in log


def test_wheel_install_serves_the_page(outside: Path) -> None:
    """
    A plain (non-editable) install of the built wheel carries the plugin and
    the page.
    """
    wheels, site = outside / "wheels", outside / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ROOT],
        capture_output=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = wheels.glob("*.whl")
    assert "-cp311-abi3-" in wheel.name  # the compiled fan-out, for 3.11 and up
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-t", site, wheel],
        capture_output=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert (site / "twisted" / "plugins" / "ssedemo_plugin.py").is_file()
    assert not (site / "twisted" / "__init__.py").exists()
    assert (site / "sse_twisted" / "static" / "client.js").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import sse_twisted; print(sse_twisted.__file__)"],
        cwd=outside,
        env=env,
        capture_output=True,
        timeout=DEADLINE,
    )
    assert where.stdout.decode().startswith(str(site))
    server = TwistdServer(env=env).start()
    try:
        assert b"EventSource" in get(server.url + "/client.js")[1]
        read_stream_until(server.port, b"Gotcha")
        fanout = choose_fanout().name  # "c" unless SSEDEMO_PURE_PYTHON is set
        assert server.health()["fanout"] == fanout
        assert f"fan-out: {fanout} (".encode() in server.output
    finally:
        server.stop()
