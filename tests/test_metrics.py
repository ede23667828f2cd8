"""
Tests for L{sse_twisted.ops.metrics}: what the hub and the streams count, on a
fake clock, and a real scrape of C{/metrics} over a socket.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from memory_http import parse_response
from prometheus_client.parser import text_string_to_metric_families
from test_hub import FakeSink
from test_integration import (
    STATIC,
    Server,
    reactor_,
    stalled_stream,
    start_server,
    tick,
    until,
)
from test_plugin import get, read_until
from test_stream import FakeRequest
from twistd_process import TwistdServer, eventually
from twisted.internet import defer
from twisted.internet.task import Clock

from sse_twisted.app import Settings, SSEApp
from sse_twisted.hub import Hub
from sse_twisted.log import MemoryLog
from sse_twisted.ops.metrics import Metrics
from sse_twisted.overload import ClientLimit
from sse_twisted.stream import EventStream

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(metrics: Metrics) -> Samples:
    """
    @return: Every C{ssedemo_*} sample of a registry, by name and labels.
    """
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name.startswith("ssedemo_") and not sample.name.endswith("_created")
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def watched_hub() -> tuple[Hub, Metrics, Clock]:
    clock = Clock()
    metrics = Metrics()
    hub = Hub(clock, MemoryLog(instance="t"), observer=metrics)
    metrics.count_streams(hub.__len__)
    return hub, metrics, clock


def test_every_metric_exists_from_the_start() -> None:
    """
    Before anything happens every metric is there, at zero, with both
    resume results and the slow-drop reason; the process collector is on.
    """
    _, metrics, _ = watched_hub()
    assert samples(metrics) == {
        ("ssedemo_streams", ()): 0,
        ("ssedemo_streams_opened_total", ()): 0,
        ("ssedemo_events_published_total", ()): 0,
        ("ssedemo_deliveries_total", ()): 0,
        ("ssedemo_streams_dropped_total", (("reason", "slow"),)): 0,
        ("ssedemo_streams_refused_total", ()): 0,
        ("ssedemo_events_conflated_total", ()): 0,
        ("ssedemo_resumes_total", (("result", "replayed"),)): 0,
        ("ssedemo_resumes_total", (("result", "resync"),)): 0,
        **{
            ("ssedemo_fanout_seconds_bucket", (("le", le),)): 0
            for le in [
                "0.0001",
                "0.00025",
                "0.0005",
                "0.001",
                "0.0025",
                "0.005",
                "0.01",
                "0.025",
                "0.05",
                "0.1",
                "0.25",
                "0.5",
                "1.0",
                "2.5",
                "+Inf",
            ]
        },
        ("ssedemo_fanout_seconds_count", ()): 0,
        ("ssedemo_fanout_seconds_sum", ()): 0,
    }
    assert value(metrics, "process_resident_memory_bytes")
    assert value(metrics, "process_open_fds")


def test_a_fanout_counts_once_with_the_number_of_its_streams() -> None:
    """
    An event written to three streams adds three deliveries and one
    fan-out observation; a publish to a topic without streams is published
    but fans out to nothing.
    """
    hub, metrics, _ = watched_hub()
    sinks = [FakeSink() for _ in range(3)]
    for sink in sinks:
        hub.subscribe(sink)
    assert value(metrics, "ssedemo_streams") == 3
    hub.publish("one")
    assert value(metrics, "ssedemo_events_published_total") == 1
    assert value(metrics, "ssedemo_deliveries_total") == 3
    assert value(metrics, "ssedemo_fanout_seconds_count") == 1
    hub.publish("nobody listens", topic="elsewhere")
    assert value(metrics, "ssedemo_events_published_total") == 2
    assert value(metrics, "ssedemo_deliveries_total") == 3
    assert value(metrics, "ssedemo_fanout_seconds_count") == 1
    hub.broadcast("heartbeat")
    assert value(metrics, "ssedemo_events_published_total") == 2
    assert value(metrics, "ssedemo_deliveries_total") == 6
    assert value(metrics, "ssedemo_fanout_seconds_count") == 2
    fanout_sum = value(metrics, "ssedemo_fanout_seconds_sum")
    assert fanout_sum is not None and 0 <= fanout_sum < 1


def test_opened_streams_are_counted_per_loop_turn() -> None:
    """
    Streams opened in one turn of the event loop are added in one go at its
    end, as the hub logs them; the gauge follows the open streams at once,
    closes included.
    """
    hub, metrics, clock = watched_hub()
    sinks = [FakeSink() for _ in range(5)]
    for sink in sinks:
        hub.subscribe(sink)
    assert value(metrics, "ssedemo_streams_opened_total") == 0
    clock.advance(0)
    assert value(metrics, "ssedemo_streams_opened_total") == 5
    hub.unsubscribe(sinks[0])
    hub.unsubscribe(sinks[1])
    clock.advance(0)
    assert value(metrics, "ssedemo_streams") == 3
    assert value(metrics, "ssedemo_streams_opened_total") == 5


def test_resumes_count_replays_and_resyncs() -> None:
    hub, metrics, _ = watched_hub()
    first = hub.publish("a")
    hub.publish("b")
    hub.subscribe(FakeSink(), last_event_id=first.id)
    hub.subscribe(FakeSink(), last_event_id="unknown-7")
    hub.subscribe(FakeSink(), last_event_id="other-1")
    hub.subscribe(FakeSink())
    assert value(metrics, "ssedemo_resumes_total", result="replayed") == 1
    assert value(metrics, "ssedemo_resumes_total", result="resync") == 2


def test_many_topics_add_no_time_series() -> None:
    """
    Topics never become labels: streams on a thousand topics and a publish
    to each change the values, not the set of time series.
    """
    hub, metrics, clock = watched_hub()
    before = set(samples(metrics))
    for n in range(1000):
        hub.subscribe(FakeSink(), [f"topic-{n}"], last_event_id=f"x-{n}")
        hub.publish(str(n), topic=f"topic-{n}")
    clock.pump([0.1] * 10)  # past the hold of a crowd of resumes
    after = samples(metrics)
    assert set(after) == before
    assert after[("ssedemo_deliveries_total", ())] == 1000


def test_slow_stream_drop_is_counted() -> None:
    metrics = Metrics()
    request = FakeRequest()
    stream = EventStream(
        request,  # type: ignore[arg-type]
        lambda _: None,
        max_backlog=10,
        dropped=metrics.dropped_slow,
    )
    stream.start(b"hello")
    stream.pauseProducing()
    stream.write(b"x" * 11)
    stream.write(b"x" * 11)
    assert value(metrics, "ssedemo_streams_dropped_total", reason="slow") == 1


class Watched(Server):
    """
    The whole server, with metrics served on a port of their own and a
    limit of two streams.
    """

    def __init__(self, hub: Hub, port: int, metrics_port: int) -> None:
        super().__init__(hub, port)
        self.metrics = Server(hub, metrics_port)

    @defer.inlineCallbacks
    def scrape(self) -> Generator[Any, Any, dict[str, Any]]:
        """
        @return: The metric families of one real scrape, by name.
        """
        response = yield self.metrics.request("GET", "/metrics")
        assert response.status == 200
        assert response.header("content-type").startswith("text/plain")
        return {
            family.name: family
            for family in text_string_to_metric_families(response.body.decode())
        }


@pytest.fixture
def watched(reactor: Any) -> Generator[Watched, None, None]:
    metrics = Metrics()
    hub = Hub(reactor, MemoryLog(history=3), observer=metrics)
    metrics.count_streams(hub.__len__)
    limit = ClientLimit(hub.__len__, 2, clock=reactor, retry=1000, observer=metrics)
    app = SSEApp(
        hub, Settings(static=STATIC, max_backlog=4096), limit=limit, observer=metrics
    )
    service, port = start_server(reactor, hub, app, heartbeat=0, keepalive=0)
    limit.setServiceParent(service)
    scraped = reactor.listenTCP(0, metrics.site(), interface="127.0.0.1")
    yield Watched(hub, port, scraped.getHost().port)
    pytest_twisted.blockon(defer.maybeDeferred(scraped.stopListening))
    pytest_twisted.blockon(service.stopService())


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    for family in families.values():
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    raise AssertionError(f"no {name} {labels}")


@pytest_twisted.inlineCallbacks
def test_scrape_shows_what_happened(watched: Watched) -> Generator[Any, Any, None]:
    """
    A real scrape of C{/metrics} carries every metric with its type, and
    values that follow streams opening, publishes, a slow client dropped,
    a resume replayed and one told to resync, and refusals over the limit.
    """
    families = yield watched.scrape()
    types = {name: family.type for name, family in families.items()}
    assert types["ssedemo_streams"] == "gauge"
    for name in (
        "ssedemo_streams_opened",
        "ssedemo_events_published",
        "ssedemo_deliveries",
        "ssedemo_streams_dropped",
        "ssedemo_streams_refused",
        "ssedemo_resumes",
    ):
        assert types[name] == "counter"
    assert types["ssedemo_fanout_seconds"] == "histogram"
    assert sample(families, "process_resident_memory_bytes") > 0
    assert sample(families, "process_open_fds") > 0

    # A slow client that never reads, dropped once it is too far behind.
    stalled = stalled_stream(watched.port)
    reading = yield watched.stream()
    yield until(lambda: len(watched.hub) == 2)
    for n in range(300):  # up to 19 MB: past any socket buffers and the backlog
        watched.hub.publish(f"{n} {'y' * 65536}")
        yield tick()
        if len(watched.hub) == 1:
            break
    yield until(lambda: len(watched.hub) == 1)
    stalled.close()
    published = n + 1
    yield reading.wait_for(lambda: f"{n} y".encode() in reading.received[-70000:])
    last_id = reading.body().rpartition(b"id: ")[2].partition(b"\n")[0].decode()

    # A resume that is replayed, one that must resync.
    watched.hub.publish("while away")
    replayed = yield watched.stream(headers=f"Last-Event-ID: {last_id}\r\n")
    yield replayed.wait_for(lambda: "while away" in replayed.data())
    refused = yield watched.stream(headers="Last-Event-ID: nonsense\r\n")
    yield refused.lost.addTimeout(10, reactor_())
    reading.transport.loseConnection()  # type: ignore[union-attr]
    yield until(lambda: len(watched.hub) == 1)
    resync = yield watched.stream(headers="Last-Event-ID: nonsense\r\n")
    yield resync.wait_for(lambda: "resync" in resync.body().decode())

    families = yield watched.scrape()
    assert sample(families, "ssedemo_streams") == 2
    assert sample(families, "ssedemo_streams_opened_total") == 4
    assert sample(families, "ssedemo_events_published_total") == published + 1
    # Each of the first events went to both streams, until the drop.
    deliveries = sample(families, "ssedemo_deliveries_total")
    assert published + 1 < deliveries <= 2 * published + 1
    assert sample(families, "ssedemo_streams_dropped_total", reason="slow") == 1
    assert sample(families, "ssedemo_streams_refused_total") == 1
    assert sample(families, "ssedemo_resumes_total", result="replayed") == 1
    assert sample(families, "ssedemo_resumes_total", result="resync") == 1
    assert sample(families, "ssedemo_fanout_seconds_count") == published + 1
    replayed.transport.loseConnection()  # type: ignore[union-attr]
    resync.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.inlineCallbacks
def test_only_metrics_is_served(watched: Watched) -> Generator[Any, Any, None]:
    response = yield watched.metrics.request("GET", "/")
    assert response.status == 404
    response = yield watched.metrics.request("POST", "/metrics")
    assert response.status == 405


def test_twistd_serves_metrics_and_refuses_over_the_limit() -> None:
    """
    C{twistd -n ssedemo --metrics ... --max-clients 1}, run as a user runs
    it: C{/metrics} answers on its own port, a second stream is refused
    with a C{retry:}, the scrape shows both, and the refusal is logged.
    """
    server = TwistdServer(
        args=["--metrics", "tcp:0:interface=127.0.0.1", "--max-clients", "1"]
    ).start()
    try:
        metrics_url = f"http://127.0.0.1:{site_ports(server)[1]}/metrics"
        status, text = get(metrics_url)
        assert status == 200
        assert b"\nssedemo_streams 0.0\n" in text
        assert b"\nprocess_resident_memory_bytes " in text
        with socket.create_connection(("127.0.0.1", server.port), 10) as kept:
            kept.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
            read_until(kept, b"Gotcha")
            with socket.create_connection(("127.0.0.1", server.port), 10) as other:
                other.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
                refusal = parse_response(read_to_end(other))
            assert refusal.status == 200
            assert re.fullmatch(rb"retry: \d+\n\n", refusal.body)
            _, text = get(metrics_url)
            assert b"\nssedemo_streams 1.0\n" in text
            assert b"\nssedemo_streams_refused_total 1.0\n" in text
    finally:
        server.stop()
    assert b"streams refused: 1; --max-clients 1 reached" in server.output


def site_ports(server: TwistdServer) -> list[int]:
    """
    @return: The ports of the sites C{server} has started, once there are
        two (bounded wait).
    """

    def ports() -> list[int] | None:
        found = re.findall(rb"Site starting on (\d+)", server.output)
        return [int(p) for p in found] if len(found) >= 2 else None

    return eventually(ports, "a second site")


def read_to_end(sock: socket.socket) -> bytes:
    received = b""
    for _ in range(1000):
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    raise AssertionError("no end of file")


class SharedLog:
    available = True
    skipped = 0


def test_shared_log_state_is_read_at_each_scrape() -> None:
    """
    With a shared log (Redis), a scrape says whether it can be reached and
    how many of its entries were skipped as malformed.
    """
    metrics = Metrics()
    log = SharedLog()
    metrics.watch_shared_log(log)
    assert value(metrics, "ssedemo_broker_up") == 1.0
    assert value(metrics, "ssedemo_redis_entries_skipped_total") == 0
    log.available = False
    log.skipped = 3
    assert value(metrics, "ssedemo_broker_up") == 0.0
    assert value(metrics, "ssedemo_redis_entries_skipped_total") == 3
    assert value(Metrics(), "ssedemo_broker_up") is None
