"""
Tests for L{sse_twisted.service}: timers driven by a fake clock, and the
graceful stop.
"""

from __future__ import annotations

import gc

from test_hub import FakeSink
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python.filepath import FilePath

from sse_twisted.app import Settings, SSEApp
from sse_twisted.fanout import choose_fanout
from sse_twisted.hub import Hub
from sse_twisted.log import MemoryLog
from sse_twisted.service import (
    DRAIN_SECONDS,
    GarbageCollectorTuning,
    ListenWhenReady,
    StopInTurn,
    StreamCloser,
    sse_service,
)
from sse_twisted.testing import parse

HELLO = '{"message": "Hello hello!"}'


def start(
    heartbeat: float = 3.0, keepalive: float = 15.0
) -> tuple[MemoryReactorClock, Hub, FakeSink, MultiService]:
    reactor = MemoryReactorClock()
    hub = Hub(reactor, MemoryLog(instance="t"), groups=choose_fanout().groups)
    app = SSEApp(hub, Settings(static=FilePath(".")))
    service = sse_service(
        hub,
        app.site(),
        TCP4ServerEndpoint(reactor, 0),
        clock=reactor,
        heartbeat=heartbeat,
        keepalive=keepalive,
        retry=3000,
    )
    service.startService()
    sink = FakeSink()
    hub.subscribe(sink)
    return reactor, hub, sink, service


def test_listens_on_the_endpoint() -> None:
    reactor, _, _, _ = start()
    assert len(reactor.tcpServers) == 1


def test_heartbeat_every_interval() -> None:
    """
    Every heartbeat interval, each open stream gets C{Hello hello!} (without
    an id), and nothing in between.
    """
    reactor, _, sink, _ = start(heartbeat=3.0)
    reactor.advance(2.9)
    assert sink.writes == []
    reactor.advance(0.1)
    assert sink.writes == [b'data: {"message": "Hello hello!"}\n\n']
    reactor.advance(3)
    assert sink.data() == [HELLO, HELLO]


def test_heartbeat_off() -> None:
    reactor, _, sink, _ = start(heartbeat=0, keepalive=0)
    reactor.advance(600)
    assert sink.writes == []


def test_keepalive_comment_when_idle_even_without_heartbeat() -> None:
    """
    With the heartbeat off, a stream silent for the keep-alive time gets a
    comment, not earlier, and then one every keep-alive time.
    """
    reactor, _, sink, _ = start(heartbeat=0, keepalive=15)
    reactor.pump([0.25] * 59)
    assert sink.writes == []
    reactor.pump([0.25])
    assert parse(b"".join(sink.writes)).comments == [""]
    assert sink.data() == []
    reactor.pump([0.25] * 60)
    assert parse(b"".join(sink.writes)).comments == ["", ""]


def test_no_keepalive_on_a_busy_stream() -> None:
    """
    A heartbeat more frequent than the keep-alive makes comments needless.
    """
    reactor, _, sink, _ = start(heartbeat=3, keepalive=15)
    reactor.pump([1] * 60)
    assert parse(b"".join(sink.writes)).comments == []
    assert len(sink.data()) == 20


def test_stop_stops_the_timers_and_ends_streams() -> None:
    """
    Stopping ends every stream with a C{retry:} field and stops the
    heartbeat; the stop completes once the farewells had time to drain.
    """
    reactor, hub, sink, service = start()
    stopped: list[object] = []
    service.stopService().addCallback(stopped.append)
    assert sink.closed_with is not None
    retry = parse(sink.closed_with).retry
    assert retry is not None and 3000 <= retry < 6000
    assert len(hub) == 0
    assert stopped == []
    reactor.advance(DRAIN_SECONDS)
    assert len(stopped) == 1
    reactor.advance(60)
    assert sink.data() == []


def test_closer_spreads_reconnects() -> None:
    """
    Each client is told its own delay, between one and two retry intervals,
    so that a restart is not met by every client at once.
    """
    reactor = MemoryReactorClock()
    hub = Hub(reactor)
    sinks = [FakeSink() for _ in range(3)]
    for sink in sinks:
        hub.subscribe(sink)
    jitters = iter([0.0, 0.5, 0.999])
    closer = StreamCloser(hub, reactor, 1000, jitter=lambda: next(jitters))
    closer.startService()
    closer.stopService()
    assert [parse(s.closed_with or b"").retry for s in sinks] == [1000, 1500, 1999]


def test_gc_tuning_while_running_only() -> None:
    """
    While the server runs, what survives a young collection goes straight
    to the oldest generation, full garbage collections are ten times rarer
    (in young collections) and the start-up objects are frozen; stopping
    puts all back.
    """
    before = young, middle, full = gc.get_threshold()
    tuning = GarbageCollectorTuning()
    tuning.startService()
    try:
        assert gc.get_threshold() == (young, 0, full * (middle + 1) * 10 // 2)
        assert gc.get_freeze_count() > 0
    finally:
        tuning.stopService()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


class _Port:
    """
    A listening port that records whether the reactor reads it (accepts).
    """

    connected = True
    disconnecting = False
    reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


class _Endpoint:
    def __init__(self, port: _Port) -> None:
        self.port = port
        self.factories: list[object] = []

    def listen(self, factory: object) -> Deferred[_Port]:
        self.factories.append(factory)
        return succeed(self.port)


def test_listen_when_ready_binds_at_once_and_accepts_once_ready() -> None:
    """
    L{ListenWhenReady} listens at once (so a port in use fails the start)
    but leaves clients in the listen queue until it is ready; then it
    accepts. Ready from the start, it accepts from the start.
    """
    ready: Deferred[None] = Deferred()
    port = _Port()
    endpoint = _Endpoint(port)
    listening = ListenWhenReady(endpoint, lambda: ready).listen(factory := object())
    assert endpoint.factories == [factory]
    assert listening.result is port
    assert not port.reading
    ready.callback(None)
    assert port.reading
    already = _Port()
    ListenWhenReady(_Endpoint(already), lambda: succeed(None)).listen(object())
    assert already.reading


def test_listen_when_ready_leaves_a_closed_port_alone() -> None:
    """
    A port closed before the log was ready is not read again.
    """
    ready: Deferred[None] = Deferred()
    port = _Port()
    ListenWhenReady(_Endpoint(port), lambda: ready).listen(object())
    port.connected = False
    ready.callback(None)
    assert not port.reading


class SlowToStop(Service):
    """
    A service whose stop ends when told to, and which notes when it began.
    """

    def __init__(self, name: str, stops: list[str]) -> None:
        self.name = name
        self.stops = stops
        self.stopped: Deferred[None] = Deferred()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.stops.append(self.name)
        return self.stopped


def test_stop_in_turn_waits_for_each_child() -> None:
    """
    The children stop the last added first, each once the one after it
    has stopped; the whole stop ends with the first child's. A child that
    fails to stop is logged and the others still stop.
    """
    stops: list[str] = []
    log, workers, failing = (SlowToStop(n, stops) for n in ("log", "workers", "x"))
    parent = StopInTurn()
    for child in (log, workers, failing):
        child.setServiceParent(parent)
    parent.startService()
    done: list[None] = []
    parent.stopService().addCallback(done.append)
    assert stops == ["x"]
    with capturedLogs() as events:
        failing.stopped.errback(RuntimeError("cannot stop"))
    [event] = events
    assert event["log_failure"].check(RuntimeError)
    assert stops == ["x", "workers"]
    assert done == []
    workers.stopped.callback(None)
    assert stops == ["x", "workers", "log"] and done == []
    log.stopped.callback(None)
    assert done == [None] and not parent.running
