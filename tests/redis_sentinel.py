"""
A real replicated Redis under Sentinel for a test: a master, replicas and
sentinels (C{redis-server --sentinel} with a configuration written for the
test), each on a free port of 127.0.0.1, always killed at the end.

Only the standard library is used, as in L{redis_server}.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from redis_server import DEADLINE, REDIS_SERVER, RedisServer

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class Sentinel(RedisServer):
    """
    One sentinel watching L{MASTER_NAME} with a quorum of 2 and a short
    C{down-after-milliseconds}; it rewrites its own configuration file,
    which is the test's own copy.
    """

    def __init__(self, master_port: int) -> None:
        super().__init__()
        self.master_port = master_port

    def command(self) -> list[str]:
        config = Path(self.directory) / "sentinel.conf"
        if not config.exists():
            config.write_text(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 2\n"
            )
        return [REDIS_SERVER, str(config), "--sentinel"]

    def master(self) -> tuple[str, int] | None:
        """
        @return: The address this sentinel names as the master.
        """
        answer = self.cli("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        host, _, port = answer.partition("\n")
        return (host, int(port)) if port else None


class ReplicatedRedis:
    """
    A master, replicas of it and sentinels watching it.
    """

    def __init__(self, stack: ExitStack, replicas: int = 2, sentinels: int = 3) -> None:
        self.master = self._start(stack, RedisServer())
        self.replicas = [
            self._start(stack, self.replica_of(self.master.port))
            for _ in range(replicas)
        ]
        self.sentinels = [
            self._start(stack, Sentinel(self.master.port)) for _ in range(sentinels)
        ]
        self.wait_for(
            lambda: (
                self.master.cli("INFO", "replication").count("state=online") == replicas
            ),
            "replicas online",
        )
        self.wait_for(
            lambda: all(
                f"num-other-sentinels,{sentinels - 1}"
                in s.cli("SENTINEL", "master", MASTER_NAME).replace("\n", ",")
                for s in self.sentinels
            ),
            "sentinels that know each other",
        )

    @staticmethod
    def replica_of(port: int, server: RedisServer | None = None) -> RedisServer:
        """
        @return: A (new, or C{server} again) server that replicates C{port}.
        """
        args = ["--replicaof", "127.0.0.1", str(port)]
        if server is None:
            return RedisServer(args=args)
        server.args = args
        return server

    @staticmethod
    def _start(stack: ExitStack, server: RedisServer) -> RedisServer:
        stack.callback(server.remove)
        return server.start()

    def url(self, scheme: str = "redis+sentinel") -> str:
        """
        @return: The C{--redis} URL of the master through the sentinels.
        """
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{scheme}://{hosts}/{MASTER_NAME}/0"

    def named_master(self) -> RedisServer | None:
        """
        @return: The server every sentinel names as the master now, if they
            agree on one of this set's servers; else C{None}.
        """
        named = {s.master() for s in self.sentinels}
        if len(named) != 1 or None in named:
            return None
        [(_, port)] = named
        servers = [self.master, *self.replicas]
        return next((r for r in servers if r.port == port), None)

    def promoted(self, old_port: int) -> RedisServer:
        """
        Wait (bounded) until every sentinel names a new master, and that
        server says it is the master.

        @return: The new master.
        """
        new: list[RedisServer] = []

        def promoted() -> bool:
            named = {s.master() for s in self.sentinels}
            if len(named) != 1 or None in named:
                return False
            [(_, port)] = named
            if port == old_port:
                return False
            [server] = [r for r in self.replicas if r.port == port]
            if not server.cli("ROLE").startswith("master"):
                return False
            new[:] = [server]
            return True

        self.wait_for(promoted, "a promoted replica")
        return new[0]

    @staticmethod
    def wait_for(condition: Callable[[], bool], what: str) -> None:
        """
        Check C{condition} every 50 ms until it is true (bounded by twice
        L{DEADLINE}: a failover takes seconds).
        """
        pause = threading.Event()
        deadline = time.monotonic() + 2 * DEADLINE
        for _ in range(int(2 * DEADLINE / 0.05)):
            try:
                if condition():
                    return
            except subprocess.CalledProcessError:
                pass
            if time.monotonic() > deadline:
                break
            pause.wait(0.05)
        raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def replicated_redis(
    replicas: int = 2, sentinels: int = 3
) -> Iterator[ReplicatedRedis]:
    """
    A started L{ReplicatedRedis}, every process killed and removed on the
    way out.
    """
    with ExitStack() as stack:
        yield ReplicatedRedis(stack, replicas, sentinels)
