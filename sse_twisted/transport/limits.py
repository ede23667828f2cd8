"""
The open-files limit: raised as far as allowed at start, and coped with when
it is reached.

Every stream holds one descriptor, so the soft C{RLIMIT_NOFILE} (often 1024
when started from a shell) caps the open streams. The hard limit is what the
administrator allows; raising the soft limit up to it needs no privilege, and
Go's runtime does it for every program at start.

When the table is full, whatever the server imports for the first time fails
(importing opens a file). The modules that serving a request imports late are
imported at start instead.

A full table also makes C{accept()} fail. Twisted's own listening port then
accepts and closes each waiting client with a spare descriptor, logging about
four lines per client; on C{ENFILE}, or without its spare, it logs and
returns to a listening socket that is still readable, a busy loop.
L{SparingPort} instead refuses the waiting clients (they reconnect by
themselves, as C{EventSource} does), stops watching the listening socket for
L{ACCEPT_PAUSE} seconds, and accepts again once descriptors are free; all
the ports of a reactor together log at most one line per L{REPORT_INTERVAL}.
The open streams are served as before.
"""

from __future__ import annotations

import codecs
import errno
import importlib
import os
import resource
import socket
from collections.abc import Callable
from typing import Any, Self, cast
from weakref import WeakKeyDictionary

from twisted.application.service import Service
from twisted.internet import fdesc, tcp
from twisted.internet.abstract import isIPv6Address
from twisted.internet.interfaces import IDelayedCall, IProtocolFactory, IReactorTime
from twisted.logger import Logger

from sse_twisted.ops.throttle import LogSummary

LATE_IMPORTS = ("email.policy",)
"""
Modules imported on first use while serving a request: C{email.policy} by
twisted.web the first time it parses a C{Content-Type}.
"""

LATE_CODECS = ("idna",)
"""
Codecs looked up (and so imported) on first use: C{idna} by werkzeug when
Klein binds its URL map to the request's host.
"""

ACCEPT_PAUSE = 0.1
"""Seconds the listening socket is left alone after C{accept()} ran out."""

REPORT_INTERVAL = 1.0
"""The least time, in seconds, between two log lines about refused clients."""

_MAX_REFUSALS = 1000
_OUT_OF_DESCRIPTORS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
)

Limits = tuple[int, int]


def preload() -> None:
    """
    Import now what serving a request would otherwise import later.
    """
    for module in LATE_IMPORTS:
        importlib.import_module(module)
    for codec in LATE_CODECS:
        codecs.lookup(codec)


class OpenFilesLimit(Service):
    """
    On start, raises the soft open-files limit to the hard one, logs the
    figure, and preloads what serving needs (L{preload}). It does so in the
    privileged start, before the web service listens.
    """

    log = Logger()

    def __init__(
        self,
        getrlimit: Callable[[int], Limits] = resource.getrlimit,
        setrlimit: Callable[[int, Limits], None] = resource.setrlimit,
    ) -> None:
        """
        @param getrlimit: Reads a resource limit.
        @param setrlimit: Sets a resource limit.
        """
        self._get = getrlimit
        self._set = setrlimit

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        preload()
        soft, hard = self._get(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            try:
                self._set(resource.RLIMIT_NOFILE, (hard, hard))
            except (OSError, ValueError) as e:
                self.log.warn(
                    "open files limit: {soft} (could not raise it to {hard}: {e})",
                    soft=soft,
                    hard=hard,
                    e=e,
                )
                return
            self.log.info(
                "open files limit: {limit} (raised from {soft})", limit=hard, soft=soft
            )
        else:
            self.log.info("open files limit: {limit}", limit=_figure(soft))


def _figure(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


class _Listener:
    """
    A listening socket whose C{accept()}, when descriptors (or kernel memory)
    run out, notes the error and reports instead that nobody is waiting, so
    that Twisted's accept loop ends quietly.

    @ivar exhausted: The error number of the last such failure, until taken.
    """

    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self.exhausted: int | None = None
        # What socket.accept gives each accepted socket, read once: its own
        # reading costs two enum conversions per connection.
        self._kind = (int(listener.family), int(listener.type), listener.proto)

    def accept(self) -> tuple[socket.socket, Any]:
        try:
            fd, address = self._listener._accept()  # type: ignore[attr-defined]
        except OSError as e:
            if e.errno not in _OUT_OF_DESCRIPTORS:
                raise
            self.exhausted = e.errno
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN)) from e
        # As socket.accept does, for a listener without a timeout (Twisted's
        # are non-blocking), whose accepted sockets are non-blocking too.
        return socket.socket(*self._kind, fileno=fd), address

    def refuse_waiting(self) -> int:
        """
        Accept and close at once the clients waiting in the listen queue.

        @return: How many were refused.
        """
        for refused in range(_MAX_REFUSALS):
            try:
                client, _ = self._listener.accept()
            except OSError:
                return refused
            client.close()
        return _MAX_REFUSALS

    def __getattr__(self, name: str) -> Any:
        return getattr(self._listener, name)


class _RefusalReport:
    """
    Counts refused clients and logs the count at most once per
    L{REPORT_INTERVAL}; the first refusal is logged on the next turn of the
    event loop, later ones together when the interval has passed.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._error = 0
        self._summary = LogSummary(clock, self._write, interval=REPORT_INTERVAL)

    def add(self, refused: int, error: int) -> None:
        """
        Count C{refused} more clients, turned away because of C{error}.
        """
        self._error = error
        self._summary.add(refused)

    def flush(self) -> None:
        """
        Log what is counted now, if anything.
        """
        self._summary.flush()

    def _write(self, refused: int) -> None:
        self.log.warn(
            "accept() failed: {error} ({reason}); {refused} new connections"
            " refused since the last report, open streams served as before",
            error=errno.errorcode[self._error],
            reason=os.strerror(self._error),
            refused=refused,
        )


_REPORTS: WeakKeyDictionary[IReactorTime, _RefusalReport] = WeakKeyDictionary()


def _report_for(clock: IReactorTime) -> _RefusalReport:
    """
    @return: The one report of all the ports that C{clock} runs.
    """
    report = _REPORTS.get(clock)
    if report is None:
        report = _REPORTS[clock] = _RefusalReport(clock)
    return report


class SparingPort(tcp.Port):
    """
    A TCP listening port that copes with a full descriptor table: it refuses
    the waiting clients with a spare descriptor of its own, pauses accepting
    for L{ACCEPT_PAUSE} seconds, and reports the refusals in the log, at
    most once per L{REPORT_INTERVAL} for all the ports of its reactor.
    """

    socket: Any
    _spare: int | None = None
    _resume: IDelayedCall | None = None
    _report: _RefusalReport | None = None

    @classmethod
    def adopt(
        cls, reactor: Any, fileno: int, family: int, factory: IProtocolFactory
    ) -> Self:
        """
        Listen on a socket that is already bound and listening (passed by
        systemd, or by a parent process), as C{reactor.adoptStreamPort}
        does for Twisted's own port. The one place that uses Twisted's
        private C{tcp.Port._fromListeningDescriptor}.

        @param reactor: The reactor.
        @param fileno: The socket's descriptor; it is duplicated, and the
            caller closes its own.
        @param family: C{AF_INET} or C{AF_INET6}.
        @param factory: Builds the protocol of each connection.
        @return: The port, listening.
        """
        fdesc.setNonBlocking(fileno)
        port: Self = cls._fromListeningDescriptor(reactor, fileno, family, factory)
        port.startListening()
        return port

    def startListening(self) -> None:
        super().startListening()
        self.socket = _Listener(self.socket)
        self._spare = _reserve()
        self._report = _report_for(self._clock)

    @property
    def _clock(self) -> IReactorTime:
        return cast(IReactorTime, self.reactor)

    def doRead(self) -> None:
        super().doRead()
        self.pause_if_exhausted()

    def pause_if_exhausted(self) -> None:
        """
        Pause accepting if the accepts just made ran out of descriptors (or
        of kernel memory), refusing the clients that wait; call it after
        each round of accepts.
        """
        error = self.socket.exhausted
        if error is not None:
            self.socket.exhausted = None
            self._pause(error)

    def _pause(self, error: int) -> None:
        refused = 0
        if self._spare is not None:
            os.close(self._spare)
            refused = self.socket.refuse_waiting()
        self._spare = _reserve()
        assert self._report is not None
        self._report.add(refused, error)
        self.stopReading()
        self._resume = self._clock.callLater(ACCEPT_PAUSE, self._accept_again)

    def _accept_again(self) -> None:
        self._resume = None
        if self.connected and not self.disconnecting:
            self.startReading()

    def connectionLost(self, reason: Any) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._report is not None:
            self._report.flush()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        super().connectionLost(reason)


def _reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def bind_listening(interface: str, port: int, backlog: int) -> socket.socket:
    """
    Bind a TCP socket and listen, without accepting: the socket is for
    other processes to serve (through L{SparingPort.adopt}).

    @param interface: The address to listen on (IPv4 or IPv6); all IPv4
        addresses if empty.
    @param port: The port number; 0 lets the kernel pick.
    @param backlog: The size of the listen queue.
    @return: A non-blocking listening socket, not inherited by child
        processes unless they are given it explicitly.
    @raise OSError: If the address cannot be bound.
    """
    family = socket.AF_INET6 if isIPv6Address(interface) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((interface, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
