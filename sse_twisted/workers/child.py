"""
One worker process of C{twistd ssedemo --workers N}.

L{sse_twisted.workers.supervisor.WorkerSupervisor} runs it as
C{python -m sse_twisted.workers.child ARGS}, with the parent's own C{ssedemo}
arguments, the shared listening socket as descriptor
L{sse_twisted.workers.supervisor.LISTENING_FD} and a pipe from the parent as standard
input. It runs the same server as a single process, on that socket, and
stops gracefully (ending its streams with a C{retry:}) on C{SIGTERM} or
when the pipe says the parent is gone. It ignores C{SIGINT}: a Ctrl-C at
the terminal reaches the parent, which stops the workers itself. It writes
no pidfile and logs JSON lines to standard output, for the parent's log.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

from twisted.internet import fdesc
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReadDescriptor, IStreamServerEndpoint
from twisted.logger import globalLogBeginner, jsonFileLogObserver
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from sse_twisted.tap import Options, makeService
from sse_twisted.transport.shared import worker_endpoint
from sse_twisted.workers.supervisor import LISTENING_FD, PARENT_FD


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


def run(reactor: Any, options: Options) -> None:
    """
    Serve the inherited socket with the server C{options} describe, until
    C{SIGTERM} or the parent's end.
    """
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(sys.stdout)])
    options["log-json"] = None  # the parent writes it, these events included
    [port] = options["ports"]
    endpoint = inherited_endpoint(reactor, LISTENING_FD, port)
    service = makeService(options, reactor, endpoint)
    reactor.addReader(ParentWatch(PARENT_FD, lambda: stop_reactor(reactor)))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


def main(argv: Sequence[str] | None = None) -> None:
    """
    Parse the C{ssedemo} arguments and run a worker on the global reactor.
    """
    options = Options(worker=True)
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        sys.exit(f"ssedemo worker: {e}")
    from twisted.internet import reactor

    run(reactor, options)


if __name__ == "__main__":
    main()
