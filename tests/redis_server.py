"""
A real C{redis-server} of its own for a test (or a benchmark run): on a free
port of 127.0.0.1, in a temporary directory, always killed at the end.

Only the standard library is used, so that C{bench/run.py} can use it too.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REDIS_SERVER = "redis-server"
REDIS_CLI = "redis-cli"
DEADLINE = 10.0
"""Seconds to wait for the server to answer or to end."""


def free_port() -> int:
    """
    @return: A TCP port on 127.0.0.1 that nothing listens on right now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """
    One C{redis-server} process on 127.0.0.1.

    Persistence is off unless C{durable}: then every write is appended to
    the append-only file and synced before Redis answers, so that a server
    killed with C{SIGKILL} and started again (L{restart}, same port) has
    every entry it acknowledged.
    """

    def __init__(
        self,
        durable: bool = False,
        port: int = 0,
        password: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        """
        @param durable: Keep an append-only file, synced on every write.
        @param port: The port; by default a free one.
        @param password: The C{requirepass} (and C{masterauth}), if any.
        @param args: More of C{redis-server}'s options, such as
            C{--tls-port}, C{--unixsocket} or C{--replicaof}.
        """
        self.port = port or free_port()
        self.durable = durable
        self.password = password
        self.args = list(args)
        self.directory = Path(tempfile.mkdtemp(prefix="ssedemo-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """
        The C{--redis} value for this server (database 0).
        """
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """
        @return: The command line that runs this server.
        """
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable
            else ["--appendonly", "no"]
        )
        return [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            *persistence,
            *(
                []
                if self.password is None
                else ["--requirepass", self.password, "--masterauth", self.password]
            ),
            *self.args,
        ]

    def start(self) -> RedisServer:
        """
        Start the server and wait (bounded) until it answers C{PING}.

        @raise AssertionError: If it does not.
        """
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._answers():
                return self
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def cli(self, *args: str) -> str:
        """
        Run one command with C{redis-cli}, as a user would.

        @return: What C{redis-cli} printed, without the last line break.
        """
        login = (
            [] if self.password is None else ["--no-auth-warning", "-a", self.password]
        )
        result = subprocess.run(
            [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), *login, *args],
            capture_output=True,
            check=True,
            timeout=DEADLINE,
        )
        return result.stdout.decode("utf-8").rstrip("\n")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """
        End the server (at once by default) and wait (bounded) for it.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
        self.process = None

    def restart(self) -> RedisServer:
        """
        Kill the server and start it again on the same port and directory.
        """
        self.kill()
        return self.start()

    def remove(self) -> None:
        """
        Kill the server and delete its directory.
        """
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def running_redis(
    durable: bool = False,
    port: int = 0,
    password: str | None = None,
    args: Sequence[str] = (),
) -> Iterator[RedisServer]:
    """
    A started L{RedisServer}, killed and removed on the way out.
    """
    server = RedisServer(durable=durable, port=port, password=password, args=args)
    try:
        yield server.start()
    finally:
        server.remove()
