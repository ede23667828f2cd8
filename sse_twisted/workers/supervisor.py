"""
C{--workers N}: a parent process that binds the port once and keeps N worker
processes serving it.

The parent binds the listening socket (before twistd drops privileges), or
takes the one systemd passed it, and never accepts on it: each worker
inherits it as descriptor L{LISTENING_FD} and serves it as the C{--port}
says (L{sse_twisted.transport.shared}): eagerly for TCP, with TLS and
HTTP/2 for C{ssl:}. So all workers share one accept queue. Sharing one socket,
rather than one C{SO_REUSEPORT} socket per worker, means that a worker's
death or restart drops no queued connection and never unbinds the port.

Each worker is a fork of the parent (L{sse_twisted.workers.fork}) that runs
the server the parent's own C{ssedemo} arguments describe
(L{sse_twisted.workers.child}). It gets a pipe as its standard input, which
the parent never writes: when the parent is gone, however it died, the
worker reads end of file and stops, so no orphan holds the port.
Workers log to the parent as JSON lines, which the parent republishes to its
own log (a file in daemon mode), each marked with the worker's pid.

With C{--metrics}, the parent serves the metrics of the whole server: the
workers count in a directory it makes for them
(L{sse_twisted.ops.metrics_dir.MetricsDirectory}), which it tells of each
worker that ends, and removes once they all have.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import (
    ILogObserver,
    Logger,
    LogLevel,
    eventFromJSON,
    globalLogPublisher,
)
from twisted.python.failure import Failure

from sse_twisted.ops.metrics_dir import MetricsDirectory
from sse_twisted.transport.shared import SharedSocket

LISTENING_FD = 3
"""The shared listening socket's descriptor in a worker."""

PARENT_FD = 0
"""The worker's end of the pipe from its parent (its standard input)."""

RESTART_BASE = 0.5
"""Seconds before the second restart in a row of a worker that keeps dying."""

RESTART_MAX = 30.0
"""The longest wait, in seconds, before a worker is restarted."""

STABLE = 10.0
"""Seconds a worker must have run for its death to count as a first one."""

STOP_DEADLINE = 10.0
"""Seconds the workers get to end their streams before they are killed."""

SYSTEMD_VARIABLES = frozenset(("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"))
"""
What systemd tells the parent of the sockets it passed, kept from the
workers: they serve the one socket the parent gives them.
"""

_RECORD_SEPARATOR = b"\x1e"  # starts each line of twisted.logger's JSON files

StartWorker = Callable[
    [ProcessProtocol, Mapping[str, str], Mapping[int, int | str]], object
]
"""
Starts a worker process, as C{spawnProcess} would, given the protocol told
of its output and end, its environment and its descriptors (as
C{spawnProcess}'s C{childFDs}); the protocol gets the process transport.
"""


def restart_delay(deaths: int) -> float:
    """
    How long to wait before restarting a worker.

    @param deaths: How many times in a row the worker died less than
        L{STABLE} seconds after it started (the first death counts as 1,
        whenever it happens).
    @return: No wait for a first death; then L{RESTART_BASE}, doubled at
        each further death, at most L{RESTART_MAX}.
    """
    if deaths <= 1:
        return 0.0
    return float(min(RESTART_MAX, RESTART_BASE * 2 ** (deaths - 2)))


class WorkerSupervisor(Service):
    """
    Runs N worker processes on one listening socket, restarts those that
    die, and stops them all gracefully when stopped.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        endpoint: SharedSocket,
        start: StartWorker,
        count: int,
        *,
        observer: ILogObserver = globalLogPublisher,
        metrics: MetricsDirectory | None = None,
    ) -> None:
        """
        @param reactor: Times the restarts and the stop.
        @param endpoint: Where to listen; the parent binds it.
        @param start: Starts one worker.
        @param count: How many workers to run.
        @param observer: Where the workers' log events are republished.
        @param metrics: Where the workers count, with C{--metrics}.
        """
        self._reactor = reactor
        self._endpoint = endpoint
        self._start = start
        self._count = count
        self._observer = observer
        self._metrics = metrics
        self._environment: dict[str, str] = {}
        self._socket: socket.socket | None = None
        self._workers: dict[int, _Worker] = {}
        self._deaths = [0] * count
        self._restarts: dict[int, IDelayedCall] = {}
        self._stopping = False
        self._all_ended: Deferred[None] | None = None

    @property
    def pids(self) -> list[int]:
        """
        The process ids of the running workers.
        """
        return [w.pid for w in self._workers.values() if w.pid is not None]

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._bind()

    def _bind(self) -> socket.socket:
        if self._socket is None:
            self._socket = self._endpoint.bind()
            host, port = self._socket.getsockname()[:2]
            self.log.info(
                "serving {host} port {port} with {count} worker processes",
                host=host or "*",
                port=port,
                count=self._count,
            )
        return self._socket

    def startService(self) -> None:
        super().startService()
        self._bind()
        self._stopping = False
        self._environment = {
            name: value
            for name, value in os.environ.items()
            if name not in SYSTEMD_VARIABLES
        }
        if self._metrics is not None:
            self._environment.update(self._metrics.open())
        for slot in range(self._count):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        self._restarts.pop(slot, None)
        worker = _Worker(self, slot, self._reactor.seconds())
        self._workers[slot] = worker
        self._start(
            worker,
            self._environment,
            {PARENT_FD: "w", 1: "r", 2: "r", LISTENING_FD: self._bind().fileno()},
        )

    def worker_started(self, worker: _Worker) -> None:
        self.log.info(
            "worker {slot} started: pid {pid}", slot=worker.slot, pid=worker.pid
        )

    def worker_ended(self, worker: _Worker, reason: Failure) -> None:
        """
        Restart a worker that ended on its own (after a delay if it keeps
        dying); while stopping, note that one more has ended.
        """
        del self._workers[worker.slot]
        if self._metrics is not None and worker.pid is not None:
            self._metrics.worker_ended(worker.pid)
        how = _how_it_ended(reason)
        if self._stopping:
            self.log.info("worker {pid} ended ({how})", pid=worker.pid, how=how)
            if not self._workers and self._all_ended is not None:
                self._all_ended.callback(None)
            return
        lived = self._reactor.seconds() - worker.started
        deaths = 1 if lived >= STABLE else self._deaths[worker.slot] + 1
        self._deaths[worker.slot] = deaths
        delay = restart_delay(deaths)
        self.log.warn(
            "worker {pid} ended ({how}) after {lived:.1f} s; restarting it"
            " in {delay} s",
            pid=worker.pid,
            how=how,
            lived=lived,
            delay=delay,
        )
        self._restarts[worker.slot] = self._reactor.callLater(
            delay, self._spawn, worker.slot
        )

    def relay(self, worker: _Worker, line: bytes, level: LogLevel) -> None:
        """
        Republish one line of a worker's output: a JSON log event as it is,
        anything else as text at C{level}; either marked with its pid.
        """
        system = f"worker {worker.pid}"
        try:
            event = eventFromJSON(line.lstrip(_RECORD_SEPARATOR).decode("utf-8"))
        except ValueError:
            event = None
        if not isinstance(event, dict) or "log_time" not in event:
            text = line.decode("utf-8", "replace")
            self.log.emit(level, "{text}", text=text, log_system=system)
            return
        event["log_system"] = system
        self._observer(event)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        self._stopping = True
        for call in self._restarts.values():
            call.cancel()
        self._restarts.clear()
        if not self._workers:
            self._close()
            return None
        self._all_ended = Deferred()
        for worker in self._workers.values():
            worker.signal("TERM")
        kill = self._reactor.callLater(STOP_DEADLINE, self._kill_all)

        def ended(result: None) -> None:
            if kill.active():
                kill.cancel()
            self._all_ended = None
            self._close()

        return self._all_ended.addCallback(ended)

    def _kill_all(self) -> None:
        for worker in self._workers.values():
            self.log.warn(
                "worker {pid} still running {seconds} s after SIGTERM: killing it",
                pid=worker.pid,
                seconds=STOP_DEADLINE,
            )
            worker.signal("KILL")

    def _close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._metrics is not None:
            self._metrics.close()


def _how_it_ended(reason: Failure) -> str:
    signal = getattr(reason.value, "signal", None)
    if signal is not None:
        return f"signal {signal}"
    return f"exit status {getattr(reason.value, 'exitCode', None)}"


class _Worker(ProcessProtocol):
    """
    One worker process, as its parent sees it: its output goes to the
    parent's log, its end to the supervisor.
    """

    def __init__(self, supervisor: WorkerSupervisor, slot: int, started: float):
        self.supervisor = supervisor
        self.slot = slot
        self.started = started
        self.pid: int | None = None
        self._partial = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]
        self.supervisor.worker_started(self)

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N803
        fd = childFD
        *lines, self._partial[fd] = (self._partial[fd] + data).split(b"\n")
        for line in lines:
            self._relay(fd, line)

    def _relay(self, fd: int, line: bytes) -> None:
        if line.strip():
            level = LogLevel.info if fd == 1 else LogLevel.error
            self.supervisor.relay(self, line, level)

    def signal(self, name: str) -> None:
        with suppress(ProcessExitedAlready):
            self.transport.signalProcess(name)  # type: ignore[union-attr]

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._partial.items():
            self._relay(fd, rest)
        self.supervisor.worker_ended(self, reason)
