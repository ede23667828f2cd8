"""
Run by C{test_fork.py} in a process of its own: forks a worker with
L{sse_twisted.workers.fork.ForkedWorker} from a parent that, like twistd,
has a running reactor, a log file and a descriptor the worker must not
keep, and prints as JSON what the worker saw and how it ended.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure

from sse_twisted.workers.fork import ForkedWorker

log = Logger()


def worker_main(worker_reactor: Any) -> None:
    """
    What the worker runs: it reports what it inherited, on its own
    reactor, then stops.
    """
    from twisted.internet import reactor as global_reactor

    secret_fd = int(os.environ["PROBE_SECRET_FD"])

    def report() -> None:
        log.info("from the worker")  # no observer: must reach no file
        seen = {
            "own_reactor": worker_reactor is global_reactor
            and worker_reactor is not reactor,
            "secret_fd": os.readlink(f"/proc/self/fd/{secret_fd}"),
            "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
            "sigpipe_ignored": signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN,
            "environment": os.environ.get("PROBE_GIVEN"),
            "stdin": os.read(0, 100).decode(),
        }
        print(json.dumps(seen), flush=True)
        worker_reactor.stop()

    worker_reactor.callLater(0.01, report)
    worker_reactor.run()


class Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""

    def connectionMade(self) -> None:
        self.transport.write(b"from the parent")  # type: ignore[union-attr]
        self.transport.closeStdin()  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        sys.stderr.buffer.write(data)

    def processEnded(self, reason: Failure) -> None:
        print(
            json.dumps(
                {
                    "worker": json.loads(self.output or b"null"),
                    "exit_code": reason.value.exitCode,
                    "parent_log": Path(sys.argv[1]).read_text(),
                }
            ),
            flush=True,
        )
        reactor.stop()  # type: ignore[attr-defined]


def start() -> None:
    log.info("from the parent")
    secret = open(sys.argv[2], "rb")  # noqa: SIM115 (held while the worker runs)
    ForkedWorker(
        reactor,
        worker_main,
        Collect(),
        {**os.environ, "PROBE_GIVEN": "yes", "PROBE_SECRET_FD": str(secret.fileno())},
        {0: "w", 1: "r", 2: "r"},
    )


globalLogBeginner.beginLoggingTo(
    [textFileLogObserver(open(sys.argv[1], "a"))],  # noqa: SIM115
    redirectStandardIO=False,
)
reactor.callWhenRunning(start)  # type: ignore[attr-defined]
reactor.run()  # type: ignore[attr-defined]
