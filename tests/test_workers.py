"""
Tests for L{sse_twisted.workers.supervisor}: the parent of C{--workers N}, driven on a
fake clock with fake processes (the real processes are in
C{test_workers_process.py}).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.logger import (
    LogEvent,
    LogLevel,
    eventAsJSON,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure

from sse_twisted.ops.metrics_dir import ENVIRONMENT, MetricsDirectory
from sse_twisted.transport.eager import EagerTCPServerEndpoint
from sse_twisted.workers.supervisor import (
    LISTENING_FD,
    PARENT_FD,
    RESTART_BASE,
    RESTART_MAX,
    STABLE,
    STOP_DEADLINE,
    WorkerSupervisor,
    restart_delay,
)


class FakeProcess:
    """
    A worker as the supervisor starts it: records the signals sent to it.
    """

    def __init__(self, protocol: ProcessProtocol, pid: int, **spawned: Any) -> None:
        self.protocol = protocol
        self.pid = pid
        self.spawned = spawned
        self.signals: list[str] = []
        self.ended = False

    def signalProcess(self, name: str) -> None:
        if self.ended:
            raise ProcessExitedAlready()
        self.signals.append(name)

    def end(self, reason: Exception) -> None:
        self.ended = True
        self.protocol.processEnded(Failure(reason))


class ProcessReactor(Clock):
    """
    A clock that starts L{FakeProcess}es as workers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.processes: list[FakeProcess] = []

    def start_worker(
        self, protocol: ProcessProtocol, env: Any, child_fds: dict[int, Any]
    ) -> FakeProcess:
        process = FakeProcess(
            protocol, 1000 + len(self.processes), env=env, childFDs=child_fds
        )
        self.processes.append(process)
        protocol.makeConnection(process)  # type: ignore[arg-type]
        return process

    def running(self) -> list[FakeProcess]:
        return [p for p in self.processes if not p.ended]


@pytest.fixture
def events() -> list[LogEvent]:
    return []


@pytest.fixture
def started(
    events: list[LogEvent],
) -> Iterator[tuple[ProcessReactor, WorkerSupervisor]]:
    reactor = ProcessReactor()
    supervisor = WorkerSupervisor(
        reactor,
        EagerTCPServerEndpoint(reactor, 0, interface="127.0.0.1"),  # type: ignore[arg-type]
        reactor.start_worker,
        2,
        observer=events.append,
    )
    supervisor.privilegedStartService()
    supervisor.startService()
    yield reactor, supervisor
    supervisor._close()


def listening_socket(process: FakeProcess) -> socket.socket:
    fd = process.spawned["childFDs"][LISTENING_FD]
    return socket.socket(fileno=fd)


def test_restart_delay_backs_off() -> None:
    """
    A first death is restarted at once; each further one in a row waits
    twice as long, up to a limit.
    """
    delays = [restart_delay(n) for n in range(1, 12)]
    assert delays[:4] == [0, RESTART_BASE, 2 * RESTART_BASE, 4 * RESTART_BASE]
    assert delays[-1] == RESTART_MAX
    assert delays == sorted(delays)


def test_starts_the_workers_on_one_listening_socket(
    started: tuple[ProcessReactor, WorkerSupervisor],
) -> None:
    """
    Each worker gets the one socket the parent bound (listening, not
    accepted on) as descriptor 3, a pipe from the parent as standard input
    and pipes to it as standard output and error, and the parent's
    environment.
    """
    reactor, supervisor = started
    assert len(reactor.processes) == 2
    fds = set()
    for process in reactor.processes:
        child_fds = process.spawned["childFDs"]
        assert (child_fds[PARENT_FD], child_fds[1], child_fds[2]) == ("w", "r", "r")
        assert process.spawned["env"]["PATH"] == os.environ["PATH"]
        fds.add(child_fds[LISTENING_FD])
    assert supervisor.pids == [1000, 1001]
    [fd] = fds
    sock = socket.socket(fileno=fd)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert sock.getsockname()[0] == "127.0.0.1"
        with socket.create_connection(sock.getsockname(), timeout=5):
            pass  # the kernel queues it, for a worker to accept
    finally:
        sock.detach()


def test_a_dead_worker_is_restarted_at_once(
    started: tuple[ProcessReactor, WorkerSupervisor],
) -> None:
    reactor, supervisor = started
    reactor.advance(STABLE + 5)
    reactor.processes[0].end(ProcessTerminated(signal=9))
    reactor.advance(0)
    assert len(reactor.running()) == 2
    assert supervisor.pids == [1001, 1002]
    assert reactor.processes[2].spawned == reactor.processes[0].spawned


def test_a_worker_that_keeps_dying_is_restarted_ever_later(
    started: tuple[ProcessReactor, WorkerSupervisor],
) -> None:
    """
    Deaths in a row, each soon after the start, make the wait double; a
    worker that then runs for a while starts afresh.
    """
    reactor, _ = started
    waits = []
    for _ in range(5):
        reactor.processes[-1].end(ProcessTerminated(exitCode=1))
        spawned = len(reactor.processes)
        waited = 0.0
        reactor.advance(0)
        while len(reactor.processes) == spawned:
            assert waited <= RESTART_MAX
            reactor.advance(0.25)
            waited += 0.25
        waits.append(waited)
    assert waits == [
        0,
        RESTART_BASE,
        2 * RESTART_BASE,
        4 * RESTART_BASE,
        8 * RESTART_BASE,
    ]
    reactor.advance(STABLE)
    reactor.running()[-1].end(ProcessDone(0))
    reactor.advance(0)
    assert len(reactor.running()) == 2


def test_stop_ends_every_worker_gracefully(
    started: tuple[ProcessReactor, WorkerSupervisor],
) -> None:
    """
    Stopping sends SIGTERM to each worker and is done once all have ended:
    none is restarted, and the parent closes its listening socket.
    """
    reactor, supervisor = started
    stopped = supervisor.stopService()
    assert stopped is not None
    fired: list[None] = []
    stopped.addCallback(fired.append)
    assert [p.signals for p in reactor.processes] == [["TERM"], ["TERM"]]
    reactor.processes[0].end(ProcessDone(0))
    reactor.advance(STOP_DEADLINE / 2)
    assert fired == [] and len(reactor.processes) == 2
    assert listening_socket(reactor.processes[0]).detach() >= 0
    reactor.processes[1].end(ProcessDone(0))
    assert fired == [None]
    assert reactor.processes[1].signals == ["TERM"]  # no kill came
    with pytest.raises(OSError):
        listening_socket(reactor.processes[0])


def test_stop_kills_workers_that_linger(
    started: tuple[ProcessReactor, WorkerSupervisor],
) -> None:
    reactor, supervisor = started
    stopped = supervisor.stopService()
    assert stopped is not None
    reactor.advance(STOP_DEADLINE - 0.1)
    assert reactor.processes[0].signals == ["TERM"]
    reactor.advance(0.1)
    assert [p.signals for p in reactor.processes] == [["TERM", "KILL"]] * 2
    for process in reactor.processes:
        process.end(ProcessTerminated(signal=9))
    assert stopped.called


def test_stop_cancels_a_pending_restart(
    started: tuple[ProcessReactor, WorkerSupervisor],
) -> None:
    reactor, supervisor = started
    for _ in range(2):  # the second death in a row waits
        reactor.processes[-1].end(ProcessTerminated(exitCode=1))
        reactor.advance(0)
    stopped = supervisor.stopService()
    reactor.running()[0].end(ProcessDone(0))
    assert stopped is not None and stopped.called
    reactor.advance(RESTART_MAX)
    assert reactor.running() == []


class WatchedDirectory(MetricsDirectory):
    """
    A metrics directory that notes which workers it was told had ended.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ended: list[int] = []

    def worker_ended(self, pid: int) -> None:
        self.ended.append(pid)
        super().worker_ended(pid)


def test_workers_count_in_the_metrics_directory() -> None:
    """
    With C{--metrics}, the parent opens the metrics directory before the
    workers start and gives it them in their environment (beside its own),
    tells it of each worker that ends, and removes it once all have ended.
    """
    reactor = ProcessReactor()
    directory = WatchedDirectory()
    supervisor = WorkerSupervisor(
        reactor,
        EagerTCPServerEndpoint(reactor, 0, interface="127.0.0.1"),  # type: ignore[arg-type]
        reactor.start_worker,
        2,
        metrics=directory,
    )
    supervisor.startService()
    path = directory.path
    assert path is not None and os.path.isdir(path)
    for process in reactor.processes:
        assert process.spawned["env"] == {**os.environ, ENVIRONMENT: path}
    assert ENVIRONMENT not in os.environ
    reactor.processes[0].end(ProcessTerminated(signal=9))
    reactor.advance(0)
    assert directory.ended == [1000]
    assert reactor.processes[2].spawned["env"][ENVIRONMENT] == path
    stopped = supervisor.stopService()
    assert stopped is not None
    reactor.processes[1].end(ProcessDone(0))
    assert os.path.isdir(path)
    reactor.processes[2].end(ProcessDone(0))
    assert stopped.called
    assert directory.ended == [1000, 1001, 1002]
    assert directory.path is None and not os.path.exists(path)


def test_worker_log_events_reach_the_parents_log(
    started: tuple[ProcessReactor, WorkerSupervisor], events: list[LogEvent]
) -> None:
    """
    A worker's JSON log lines are republished whole (their own time and
    fields), marked with the worker's pid; other output is logged as text,
    also a last line without a line break.
    """
    reactor, _ = started
    worker = reactor.processes[1].protocol
    line = eventAsJSON(
        {
            "log_format": "streams opened: {n}",
            "n": 3,
            "log_time": 1234.5,
            "log_level": LogLevel.info,
            "log_namespace": "sse_twisted.hub",
        }
    )
    first, second = ("\x1e" + line + "\n").encode()[:20], line.encode()[19:]
    worker.childDataReceived(1, first)
    assert events == []
    worker.childDataReceived(1, second + b"\n")
    [relayed] = events
    assert formatEvent(relayed) == "streams opened: 3"
    assert relayed["log_time"] == 1234.5
    assert relayed["log_system"] == "worker 1001"


def test_worker_text_output_is_logged_with_its_pid(
    started: tuple[ProcessReactor, WorkerSupervisor],
) -> None:
    """
    Output that is not a JSON log event (a traceback on standard error) is
    logged as text, line by line, also a last line without a line break.
    """
    reactor, _ = started
    seen: list[LogEvent] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        worker = reactor.processes[0].protocol
        worker.childDataReceived(2, b"Traceback: boom\nlast words")
        worker.childDataReceived(1, json.dumps([1, 2]).encode() + b"\n")
        reactor.processes[0].end(ProcessTerminated(exitCode=1))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    texts = [
        (e["log_level"], e["log_system"], formatEvent(e))
        for e in seen
        if e.get("log_system", "").startswith("worker")
    ]
    assert texts == [
        (LogLevel.error, "worker 1000", "Traceback: boom"),
        (LogLevel.info, "worker 1000", "[1, 2]"),
        (LogLevel.error, "worker 1000", "last words"),
    ]
