"""
One worker process of C{twistd ssedemo --workers N}: what it runs once
L{sse_twisted.workers.fork} has forked it from its parent.

It has the parent's pipe as standard input, the shared listening socket as
descriptor L{sse_twisted.workers.supervisor.LISTENING_FD} and pipes to the
parent as standard output and error. It runs the same server as a single
process, built by L{sse_twisted.tap}, on that socket, and stops gracefully
(ending its streams with a C{retry:}) on C{SIGTERM} or when the pipe says
the parent is gone. It ignores C{SIGINT}: a Ctrl-C at the terminal reaches
the parent, which stops the workers itself. It writes no pidfile and logs
JSON lines to standard output, for the parent's log.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.internet import fdesc
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReadDescriptor, IStreamServerEndpoint
from twisted.logger import Logger, globalLogPublisher, jsonFileLogObserver
from twisted.python.failure import Failure
from zope.interface import implementer

from sse_twisted.transport.shared import worker_endpoint
from sse_twisted.workers.supervisor import LISTENING_FD, PARENT_FD

_log = Logger()

PROCESS_NAME = "ssedemo-worker"
"""
A worker's name as C{ps -o comm}, C{top} and C{pgrep} show it (its command
line is its parent's, which it was forked from).
"""


@implementer(IReadDescriptor)
class ParentWatch:
    """
    Watches the read end of a pipe whose write end only the parent holds:
    end of file there means the parent has exited, even if it was killed.
    """

    def __init__(self, fd: int, on_gone: Callable[[], object]) -> None:
        """
        @param fd: The pipe's read end; it is made non-blocking.
        @param on_gone: Called once the parent is gone.
        """
        self._fd = fd
        self._on_gone = on_gone
        fdesc.setNonBlocking(fd)

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> Any:
        # Nothing is ever written; any bytes are ignored.
        return fdesc.readFromFD(self._fd, lambda data: None)

    def connectionLost(self, reason: Failure) -> None:
        self._on_gone()

    def logPrefix(self) -> str:
        return "parent"


def stop_reactor(reactor: Any) -> None:
    """
    Stop C{reactor} unless it is already stopping.
    """
    with suppress(ReactorNotRunning):
        reactor.stop()


def inherited_endpoint(reactor: Any, fd: int, port: str = "") -> IStreamServerEndpoint:
    """
    @param port: The parent's C{--port}, as an endpoint description.
    @return: An endpoint that serves the inherited listening socket C{fd}
        as C{port} says: eagerly, or with TLS for an C{ssl:} port (and
        closes C{fd} once it has its own copy).
    """
    return worker_endpoint(reactor, fd, port)


def serve(
    reactor: Any,
    port: str,
    build: Callable[[IStreamServerEndpoint], IService],
) -> None:
    """
    Serve the inherited socket until C{SIGTERM} or the parent's end.

    @param reactor: The worker's own reactor.
    @param port: The parent's C{--port}, as an endpoint description.
    @param build: Builds the server on the endpoint it is given.
    """
    globalLogPublisher.addObserver(jsonFileLogObserver(sys.stdout))
    _name_process(PROCESS_NAME)
    service = build(inherited_endpoint(reactor, LISTENING_FD, port))
    reactor.addReader(ParentWatch(PARENT_FD, lambda: stop_reactor(reactor)))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Handled from the loop, not in the handler (see sse_twisted.ops.signals).
    signal.signal(
        signal.SIGTERM, lambda *_: reactor.callFromThread(_terminated, reactor)
    )
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    # Twisted's handlers would stop it again at a second SIGTERM (systemd
    # signals every process of the unit, and then the parent signals its
    # workers), logging the error of stopping a reactor that has stopped.
    reactor.run(installSignalHandlers=False)


def _name_process(name: str) -> None:
    """
    Give this process C{name} where Linux keeps it (elsewhere, nothing).
    """
    with suppress(OSError):
        Path("/proc/self/comm").write_text(name)


def _terminated(reactor: Any) -> None:
    """
    Stop at C{SIGTERM}, once however often it comes.
    """
    _log.info("received SIGTERM: ending the streams")
    stop_reactor(reactor)
