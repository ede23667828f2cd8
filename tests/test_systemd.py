"""
ssedemo under systemd: the unit files in C{contrib/} pass
C{systemd-analyze verify}, and the service's own command line, run under
C{systemd-socket-activate}, serves a stream on the socket it is given.
"""

from __future__ import annotations

import shlex
import signal
import socket
import subprocess
from functools import partial
from pathlib import Path

from test_plugin import eventually, get, read_until
from twistd_process import DEADLINE, TWISTD

CONTRIB = Path(__file__).parent.parent / "contrib"
INSTALLED_TWISTD = "/opt/ssedemo/bin/twistd"
"""Where the unit expects twistd; the tests put this virtualenv's instead."""


def unit(name: str) -> str:
    """
    @return: The unit file C{contrib/name}, with this virtualenv's twistd.
    """
    text = (CONTRIB / name).read_text()
    assert INSTALLED_TWISTD in text or name.endswith(".socket")
    return text.replace(INSTALLED_TWISTD, TWISTD)


def exec_start() -> list[str]:
    [line] = [
        line
        for line in unit("ssedemo.service").splitlines()
        if line.startswith("ExecStart=")
    ]
    return shlex.split(line.removeprefix("ExecStart="))


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """
    C{systemd-analyze verify} finds nothing to say about the units (it
    warns about unknown keys without failing, so its output must be empty).
    """
    for name in ("ssedemo.socket", "ssedemo.service"):
        (tmp_path / name).write_text(unit(name))
    result = subprocess.run(
        ["systemd-analyze", "verify", "ssedemo.socket", "ssedemo.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def free_port() -> int:
    """
    @return: A port of 127.0.0.1 that nothing listens on just now
        (C{systemd-socket-activate} does not take port 0).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening_or_failed(
    process: subprocess.Popen[bytes], output: Path, port: int
) -> bool:
    listening = f"Listening on 127.0.0.1:{port}".encode()
    return listening in output.read_bytes() or process.poll() is not None


def socket_activated(output: Path) -> tuple[subprocess.Popen[bytes], int]:
    """
    Start the unit's C{ExecStart} under C{systemd-socket-activate} on a free
    port, trying another port if the one picked was taken meanwhile.

    @return: The process and its port, once it listens.
    """
    for _ in range(5):
        port = free_port()
        with output.open("wb") as out:
            process = subprocess.Popen(
                [
                    "systemd-socket-activate",
                    f"--listen=127.0.0.1:{port}",
                    "--fdname=ssedemo.socket",
                    "--setenv=PYTHONUNBUFFERED=1",
                    *exec_start(),
                ],
                cwd=output.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        eventually(
            partial(_listening_or_failed, process, output, port),
            "systemd-socket-activate to listen or fail",
        )
        if process.poll() is None:
            return process, port
    raise AssertionError(output.read_text())


def test_socket_activation_serves_a_stream(tmp_path: Path) -> None:
    """
    The unit's C{ExecStart}, run by C{systemd-socket-activate} (which sets
    C{LISTEN_FDS}, C{LISTEN_PID} and, with C{--fdname}, the
    C{LISTEN_FDNAMES} that Twisted needs), adopts the socket on the first
    connection and serves it; on SIGTERM it stops cleanly and leaves no
    pidfile behind.
    """
    output = tmp_path / "output.log"
    process, port = socket_activated(output)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
            sock.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
            received = read_until(sock, b"Gotcha")
            assert b"text/event-stream" in received
            assert b'"streams": 1' in get(f"http://127.0.0.1:{port}/health")[1]
        process.send_signal(signal.SIGTERM)
        # twistd ends by its signal once stopped, which systemd counts as
        # a clean stop.
        assert process.wait(timeout=DEADLINE) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=DEADLINE)
    log = output.read_bytes()
    assert f"Site starting on {port}".encode() in log
    assert b"Server Shut Down" in log
    assert list(tmp_path.iterdir()) == [output]
