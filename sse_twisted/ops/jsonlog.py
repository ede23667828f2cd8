"""
Every log event as one line of JSON, for log shippers, besides twistd's own
log.

The file is reopened on C{SIGUSR1}, the signal on which twistd rotates its
own log file: a log rotator moves the file away, sends the signal, and new
events go to a new file at the same path.
"""

from __future__ import annotations

import signal
import sys
from collections import deque
from types import FrameType
from typing import IO, Any, cast

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LogPublisher,
    globalLogPublisher,
    jsonFileLogObserver,
)

STDOUT = "-"
"""
The path that means standard output: the process's own, C{sys.__stdout__}.
C{sys.stdout} will not do, since twistd replaces it with a file that logs
what is written to it: each JSON line would be logged again, without end.
"""

_Handler = Any


class JsonLog(Service):
    """
    Writes every log event to a file (or standard output) as one JSON line,
    from the moment the service starts until it stops.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        reactor: IReactorFromThreads,
        publisher: LogPublisher = globalLogPublisher,
        stdout: IO[str] | None = None,
    ) -> None:
        """
        @param path: The file to append to, or L{STDOUT}.
        @param reactor: Runs the reopening that C{SIGUSR1} asks for.
        @param publisher: Where log events come from.
        @param stdout: What L{STDOUT} writes to; C{sys.__stdout__} by default.
        """
        self.path = path
        self._stdout: IO[str] | None = sys.__stdout__ if stdout is None else stdout
        self._reactor = reactor
        self._publisher = publisher
        self._file: IO[str] | None = None
        self._write: ILogObserver | None = None
        self._previous: _Handler = None
        self._handling = False
        self._writing = False
        self._pending: deque[LogEvent] = deque()

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._use(self._stdout if self.path == STDOUT else self._open())
        self._publisher.addObserver(cast(ILogObserver, self._emit))

    def startService(self) -> None:
        super().startService()
        if self.path != STDOUT:
            self._previous = signal.signal(signal.SIGUSR1, self._on_signal)
            self._handling = True

    def stopService(self) -> None:
        super().stopService()
        if self._handling:
            signal.signal(signal.SIGUSR1, self._previous)
            self._handling = False
        self._publisher.removeObserver(cast(ILogObserver, self._emit))
        self._use(None)

    def reopen(self) -> None:
        """
        Close the file and open it again at its path, so that events go to a
        new file once the old one has been moved away. If it cannot be
        opened, events keep going to the old one.
        """
        if self.path == STDOUT or self._file is None:
            return
        try:
            self._use(self._open())
        except OSError as e:
            self.log.error("--log-json: cannot reopen {path}: {e}", path=self.path, e=e)

    def _open(self) -> IO[str]:
        return open(self.path, "a", encoding="utf-8")

    def _use(self, file: IO[str] | None) -> None:
        old, self._file = self._file, file
        self._write = None if file is None else jsonFileLogObserver(file, "")
        if old is not None and old is not self._stdout:
            old.close()

    def _emit(self, event: LogEvent) -> None:
        # A signal handler that logs (Twisted's at SIGTERM) runs between
        # two steps of this process, also in the middle of writing an event
        # to the file, which refuses a write from within its own: such an
        # event is written right after the one being written.
        self._pending.append(event)
        if self._writing:
            return
        self._writing = True
        try:
            while self._pending:
                event = self._pending.popleft()
                if self._write is not None:
                    self._write(event)
        finally:
            self._writing = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if callable(self._previous):
            self._previous(signum, frame)
        self._reactor.callFromThread(self.reopen)
