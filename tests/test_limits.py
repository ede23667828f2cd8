"""
Tests for L{sse_twisted.transport.limits}: the open-files limit raised at start, the
late imports done early, and a listening port that copes with a full
descriptor table (a real one: the soft limit is lowered for the test).
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent

from sse_twisted.transport.limits import (
    ACCEPT_PAUSE,
    REPORT_INTERVAL,
    OpenFilesLimit,
    SparingPort,
)

NOFILE = resource.RLIMIT_NOFILE


@contextmanager
def soft_limit(soft: int) -> Iterator[None]:
    """
    Run with the soft open-files limit at C{soft}, then restore it.
    """
    saved = resource.getrlimit(NOFILE)
    resource.setrlimit(NOFILE, (soft, saved[1]))
    try:
        yield
    finally:
        resource.setrlimit(NOFILE, saved)


@contextmanager
def full_table() -> Iterator[None]:
    """
    Fill this process's descriptor table for real: lower the soft limit to
    just above the descriptors in use and open files until C{EMFILE}.
    """
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    fillers: list[int] = []
    with soft_limit(highest + 8):
        try:
            for _ in range(highest + 8):
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        try:
            yield
        finally:
            for fd in fillers:
                os.close(fd)


def log_lines(events: list[dict[str, object]]) -> list[str]:
    return [formatEvent(event) for event in events]


def test_start_raises_the_soft_limit_to_the_hard_one() -> None:
    """
    Started with a soft limit under the hard one, the service raises it to
    the hard one and logs both figures.
    """
    _, hard = resource.getrlimit(NOFILE)
    assert hard != resource.RLIM_INFINITY
    with soft_limit(hard - 1), capturedLogs() as events:
        OpenFilesLimit().privilegedStartService()
        assert resource.getrlimit(NOFILE) == (hard, hard)
    assert log_lines(events) == [f"open files limit: {hard} (raised from {hard - 1})"]


def test_start_logs_a_limit_already_at_the_hard_one() -> None:
    _, hard = resource.getrlimit(NOFILE)
    with soft_limit(hard), capturedLogs() as events:
        OpenFilesLimit().privilegedStartService()
        assert resource.getrlimit(NOFILE) == (hard, hard)
    assert log_lines(events) == [f"open files limit: {hard}"]


def test_a_limit_that_cannot_be_raised_is_logged_and_kept() -> None:
    def refuse(which: int, limits: tuple[int, int]) -> None:
        raise ValueError("not allowed")

    service = OpenFilesLimit(getrlimit=lambda which: (1024, 4096), setrlimit=refuse)
    with capturedLogs() as events:
        service.privilegedStartService()
    assert log_lines(events) == [
        "open files limit: 1024 (could not raise it to 4096: not allowed)"
    ]


def test_start_imports_what_serving_would_import_late() -> None:
    """
    After the service starts, serving every kind of request (streams,
    publishing as JSON and form, errors) imports no module: with the
    descriptor table full, an import would fail.
    """
    script = """
import sys
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from memory_http import Client
from sse_twisted.app import Settings, SSEApp
from sse_twisted.hub import Hub
from sse_twisted.transport.limits import OpenFilesLimit
from sse_twisted.tap import BUNDLED_STATIC

OpenFilesLimit().privilegedStartService()
site = SSEApp(Hub(Clock()), Settings(static=FilePath(str(BUNDLED_STATIC)))).site()
client = Client(site)
before = set(sys.modules)
json = {"Content-Type": "application/json"}
client.open("GET", "/sse?topic=a")
client.request("POST", "/publish", body=b'{"data": 1}', headers=json)
client.request("POST", "/publish", body=b"data=1",
               headers={"Content-Type": "application/x-www-form-urlencoded"})
client.request("POST", "/api", body=b"{}", headers=json)
client.request("POST", "/publish", body=b"--X\\r\\n\\r\\nx\\r\\n--X--\\r\\n",
               headers={"Content-Type": "multipart/form-data; boundary=X"})
client.request("POST", "/publish", body=b"{", headers=json)
client.request("POST", "/publish", body=b"x", headers={"Content-Type": "text/plain"})
client.request("GET", "/health")
client.request("OPTIONS", "/sse")
client.request("DELETE", "/sse")
client.request("GET", "/sse?topic=%25")
print(sorted(set(sys.modules) - before))
"""
    tests = Path(__file__).parent
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": f"{tests}{os.pathsep}{tests.parent}"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


class Counted(Protocol):
    made = 0

    def connectionMade(self) -> None:
        Counted.made += 1


@pytest.fixture
def port() -> Iterator[tuple[SparingPort, MemoryReactorClock]]:
    """
    A listening L{SparingPort} on 127.0.0.1, whose reactor is in memory: the
    test calls C{doRead} itself and moves the clock.
    """
    Counted.made = 0
    reactor = MemoryReactorClock()
    port = SparingPort(0, Factory.forProtocol(Counted), 50, "127.0.0.1", reactor)
    port.startListening()
    yield port, reactor
    if port.connected:
        port.stopListening()
        reactor.advance(0)


def connect(port: SparingPort) -> socket.socket:
    """
    Connect a client; the kernel completes the handshake before any accept.
    """
    return socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)


def refused(client: socket.socket) -> bool:
    try:
        return client.recv(1) == b""
    except ConnectionResetError:
        return True
    finally:
        client.close()


def test_full_table_refuses_waiting_clients_and_pauses(
    port: tuple[SparingPort, MemoryReactorClock],
) -> None:
    """
    When C{accept()} fails with C{EMFILE}, the waiting clients are closed at
    once, the port stops being read for a short pause, and one line is
    logged; after the pause it accepts new clients again.
    """
    listening, reactor = port
    clients = [connect(listening) for _ in range(3)]
    with capturedLogs() as events:
        with full_table():
            listening.doRead()
        assert listening not in reactor.getReaders()
        assert [refused(client) for client in clients] == [True] * 3
        assert Counted.made == 0
        reactor.advance(0)
    [line] = log_lines(events)
    assert line.startswith("accept() failed: EMFILE (Too many open files);")
    assert "3 new connections refused" in line
    reactor.advance(ACCEPT_PAUSE)
    assert listening in reactor.getReaders()
    client = connect(listening)
    listening.doRead()
    assert Counted.made == 1
    client.close()


def test_refusals_are_logged_at_most_once_a_second(
    port: tuple[SparingPort, MemoryReactorClock],
) -> None:
    """
    Clients refused every pause for 2.5 seconds make one line a second at
    most, and the lines count every refused client.
    """
    listening, reactor = port
    rounds = 25
    logged_at: list[float] = []
    with capturedLogs() as events:
        for step in range(rounds + 10):
            if step < rounds:
                assert listening in reactor.getReaders()
                client = connect(listening)
                with full_table():
                    listening.doRead()
                assert refused(client)
            reactor.advance(ACCEPT_PAUSE)
            logged_at += [reactor.seconds()] * (len(events) - len(logged_at))
    gaps = [b - a for a, b in pairwise(logged_at)]
    assert len(logged_at) == 4
    assert min(gaps) > REPORT_INTERVAL - ACCEPT_PAUSE / 2
    counts = [int(line.split("; ")[1].split()[0]) for line in log_lines(events)]
    assert counts[0] == 1
    assert sum(counts) == rounds


def test_ports_of_one_reactor_share_one_report(
    port: tuple[SparingPort, MemoryReactorClock],
) -> None:
    """
    Two ports out of descriptors at the same time make one log line, not
    one each.
    """
    first, reactor = port
    second = SparingPort(0, Factory.forProtocol(Counted), 50, "127.0.0.1", reactor)
    second.startListening()
    clients = [connect(first), connect(second)]
    with capturedLogs() as events:
        with full_table():
            first.doRead()
            second.doRead()
        assert [refused(client) for client in clients] == [True, True]
        reactor.advance(REPORT_INTERVAL)
        second.stopListening()
        reactor.advance(0)
    [line] = [line for line in log_lines(events) if "accept()" in line]
    assert "2 new connections refused" in line


def test_stopping_during_a_pause_reports_and_leaves_nothing_scheduled(
    port: tuple[SparingPort, MemoryReactorClock],
) -> None:
    """
    A port stopped while paused logs what it refused and does not come back
    to reading.
    """
    listening, reactor = port
    client = connect(listening)
    with capturedLogs() as events:
        with full_table():
            listening.doRead()
        assert refused(client)
        listening.stopListening()
        reactor.pump([0, 0])
        [line] = [line for line in log_lines(events) if "accept()" in line]
    assert "1 new connections refused" in line
    assert reactor.getDelayedCalls() == []
    reactor.advance(ACCEPT_PAUSE)
    assert listening not in reactor.getReaders()
