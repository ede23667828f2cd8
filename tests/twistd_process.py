"""
Run C{twistd ssedemo} as a real subprocess, the way a user does.

The process runs from a directory outside the repository, so that it finds
the plugin through the installed package rather than the source tree.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

TWISTD = str(Path(sys.executable).with_name("twistd"))
_LISTENING = re.compile(rb"Site (\(TLS\) )?starting on (\d+)")
DEADLINE = 20.0
T = TypeVar("T")


class TwistdServer:
    """
    One C{twistd -n ssedemo} process listening on 127.0.0.1.

    With C{port=0} the kernel picks a free port, read back from the log.
    Further C{--port}s in C{args} are listened on too; L{start} waits for
    all of them.
    """

    def __init__(
        self,
        port: int = 0,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        open_files: int | None = None,
        default_port: bool = True,
    ) -> None:
        """
        @param open_files: If given, the process's open-files limit (soft
            and hard).
        @param default_port: Whether to listen on C{port} (TCP) besides the
            C{--port}s of C{args}.
        """
        self.default_port = default_port
        self.port = port
        self.open_files = open_files
        self.args = list(args)
        self.env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        self.workdir = Path(tempfile.mkdtemp(prefix="ssedemo-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.output = b""
        self.listening: list[tuple[bool, int]] = []
        """(TLS or not, port) of every port, in the order of the log."""
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_port(self) -> int:
        """
        The first TLS port.
        """
        return next(port for tls, port in self.listening if tls)

    def start(self) -> TwistdServer:
        self.process = subprocess.Popen(
            [
                TWISTD,
                "-n",
                "ssedemo",
                *(
                    ("--port", f"tcp:{self.port}:interface=127.0.0.1")
                    if self.default_port
                    else ()
                ),
                *self.args,
            ],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            preexec_fn=None if self.open_files is None else self._limit_open_files,
        )
        self._listening.clear()
        self.listening = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._listening.wait(DEADLINE):
            self.stop()
            raise AssertionError(f"twistd did not start:\n{self.output.decode()}")
        return self

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        limit = (self.open_files, self.open_files)
        resource.setrlimit(resource.RLIMIT_NOFILE, limit)

    def cpu_seconds(self) -> float:
        """
        @return: The CPU time (user and system) the process has used so far.
        """
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        user, system = stat.rpartition(")")[2].split()[11:13]
        return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")

    def _drain(self) -> None:
        """
        Collect the output (so the pipe never fills) and note the port.
        """
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output += line
            match = _LISTENING.search(line)
            if match and not self._listening.is_set():
                self.listening.append((bool(match.group(1)), int(match.group(2))))
                ports = self.default_port + self.args.count("--port")
                if len(self.listening) == ports:
                    self.port = self.listening[0][1]
                    self._listening.set()

    def health(self) -> dict[str, object]:
        # DEADLINE, not less: with --redis, a port accepts once the log is read
        # or the hold time-out (5 s) has passed; meanwhile clients wait.
        with urllib.request.urlopen(self.url + "/health", timeout=DEADLINE) as response:
            result: dict[str, object] = json.load(response)
            return result

    def stop(self) -> int:
        """
        Send SIGTERM and wait (bounded) for the process to end.

        @return: The exit status.
        """
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
        if self._reader is not None:
            self._reader.join(DEADLINE)
        return self.process.returncode


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    """
    Read from C{sock} until C{marker} arrives (bounded; each read times out).
    """
    received = b""
    for _ in range(1000):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
        if marker in received:
            return received
    raise AssertionError(f"{marker!r} not seen in {received[-200:]!r}")


def eventually(condition: Callable[[], T | None], what: str) -> T:
    """
    Check C{condition} every 50 ms until it gives a true value (bounded by
    DEADLINE), for things only visible from outside: files, processes.
    """
    pause = threading.Event()
    for _ in range(int(DEADLINE / 0.05)):
        result = condition()
        if result:
            return result
        pause.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")
