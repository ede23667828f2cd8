"""
Tests for L{sse_twisted.overload}: C{--max-clients}, over in-memory
connections on a fake clock and over real sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Generator
from typing import Any

import pytest
import pytest_twisted
from memory_h2 import H2Client
from memory_http import Client, parse_response
from test_integration import STATIC, Server, reactor_, start_server, until
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.filepath import FilePath

from sse_twisted.app import Settings, SSEApp
from sse_twisted.hub import Hub
from sse_twisted.log import MemoryLog
from sse_twisted.ops.metrics import Metrics
from sse_twisted.overload import LOG_INTERVAL, ClientLimit
from sse_twisted.testing import parse

RETRY = 2000
GOTCHA = '{"message": "Gotcha"}'


def limited(
    max_clients: int = 1, jitter: float | None = None
) -> tuple[Client, Hub, ClientLimit, Metrics, Clock]:
    clock = Clock()
    metrics = Metrics()
    hub = Hub(clock, MemoryLog(instance="t"), observer=metrics)
    limit = ClientLimit(
        hub.__len__,
        max_clients,
        clock=clock,
        retry=RETRY,
        observer=metrics,
        **({} if jitter is None else {"jitter": lambda: jitter}),
    )
    app = SSEApp(hub, Settings(static=FilePath(".")), limit=limit, observer=metrics)
    return Client(app.site()), hub, limit, metrics, clock


def refused_count(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("ssedemo_streams_refused_total")


def test_over_the_limit_a_stream_gets_only_a_retry_and_ends() -> None:
    """
    With the limit reached, C{GET /sse} is answered C{200} as an event
    stream, with one C{retry:} field of one to two retry intervals and
    nothing else; the response ends and the connection closes. It is never
    subscribed, and it is counted.
    """
    client, hub, _, metrics, _ = limited(jitter=0.5)
    kept = client.open("GET", "/sse")
    turned_away = client.open("GET", "/sse?topic=x", headers={"Last-Event-ID": "t-1"})
    response = turned_away.response()
    assert response.status == 200
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    assert response.header("connection") == "close"
    assert response.complete
    assert response.body == b"retry: 3000\n\n"
    stream = parse(response.body)
    assert stream.events == [] and stream.retry == 3000
    assert turned_away.transport.disconnecting
    assert len(hub) == 1
    assert refused_count(metrics) == 1
    assert not kept.transport.disconnecting
    assert not kept.response().complete


def test_the_retry_is_random_within_one_to_two_intervals() -> None:
    client, _, _, _, _ = limited(max_clients=1)
    client.open("GET", "/sse")
    retries = {parse(client.request("GET", "/sse").body).retry for _ in range(50)}
    assert all(r is not None and RETRY <= r < 2 * RETRY for r in retries)
    assert len(retries) > 1


def test_a_closed_stream_makes_room() -> None:
    client, hub, _, metrics, _ = limited(max_clients=2)
    first = client.open("GET", "/sse")
    client.open("GET", "/sse")
    assert client.request("GET", "/sse").body.startswith(b"retry:")
    first.disconnect()
    assert len(hub) == 1
    again = client.open("GET", "/sse")
    assert not again.response().complete
    assert len(hub) == 2
    assert refused_count(metrics) == 1


def test_over_http2_a_refused_stream_ends_and_the_connection_stays() -> None:
    """
    Over HTTP/2, where one connection carries all of a browser's streams, a
    refused stream gets its C{200} and C{retry:} and ends (C{END_STREAM},
    not a reset), alone: the connection stays up, its open streams keep
    getting events, and once one of them is closed the next stream on the
    same connection is accepted.
    """
    client, hub, _, metrics, clock = limited(max_clients=2, jitter=0.25)
    client.site.reactor = clock  # type: ignore[attr-defined]
    h2 = H2Client(client.site, clock)
    first, second = h2.get("/sse"), h2.get("/sse")
    refused = h2.get("/sse")
    assert h2.headers[refused][b":status"] == b"200"
    assert h2.headers[refused][b"content-type"] == b"text/event-stream; charset=utf-8"
    assert h2.data[refused] == b"retry: 2500\n\n"
    assert refused in h2.ended and refused not in h2.reset
    assert refused_count(metrics) == 1
    assert h2.terminated is None and not h2.transport.disconnecting
    hub.publish('"shared"')
    h2.pump()
    for stream in (first, second):
        assert [e.data for e in parse(h2.data[stream]).events][-1] == '"shared"'
        assert stream not in h2.ended
    h2.cancel(first)
    clock.advance(0)
    assert len(hub) == 1
    again = h2.get("/sse")
    assert [e.data for e in parse(h2.data[again]).events] == [GOTCHA]
    assert again not in h2.ended
    assert len(hub) == 2
    assert h2.terminated is None and not h2.transport.disconnecting


def test_a_refusal_carries_the_cors_headers() -> None:
    """
    A page of an allowed origin can read the refusal's C{retry:}.
    """
    hub = Hub(Clock(), MemoryLog(instance="t"))
    limit = ClientLimit(hub.__len__, 0, clock=Clock(), retry=RETRY)
    settings = Settings(static=FilePath("."), cors_origins=("https://a.example",))
    client = Client(SSEApp(hub, settings, limit=limit).site())
    response = client.request("GET", "/sse", headers={"Origin": "https://a.example"})
    assert response.header("access-control-allow-origin") == "https://a.example"
    assert parse(response.body).retry is not None


def test_head_and_bad_requests_are_not_refused() -> None:
    """
    C{HEAD /sse} never opens a stream: at the limit it still gets the
    stream's headers, and is not counted as refused. A request with bad
    topics gets its C{400} whether or not there is room.
    """
    client, _, _, metrics, _ = limited()
    client.open("GET", "/sse")
    head = client.request("HEAD", "/sse")
    assert head.status == 200
    assert head.header("content-type") == "text/event-stream; charset=utf-8"
    assert head.body == b""
    assert client.request("GET", "/sse?topic=bad%20topic").status == 400
    assert refused_count(metrics) == 0


def test_refusals_stay_out_of_the_access_log() -> None:
    """
    Refused streams are summed up, not written to the access log one by
    one; other requests are logged as usual.
    """
    client, _, _, _, _ = limited()
    client.site.startFactory()
    try:
        with capturedLogs() as events:
            client.open("GET", "/sse")
            for _ in range(3):
                client.request("GET", "/sse")
            client.request("GET", "/health")
    finally:
        client.site.stopFactory()
    access = [formatEvent(e) for e in events if '" 200 ' in formatEvent(e)]
    assert len(access) == 1
    assert '"GET /health HTTP/1.1" 200' in access[0]


def refusal_lines(events: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events if "refused" in (e.get("log_format") or "")]


def test_refusals_are_logged_once_a_second_in_sum() -> None:
    """
    A burst of refusals makes one log line a second later, with their
    number; refusals in the next second make the next line; no refusals,
    no line.
    """
    client, _, _, _, clock = limited()
    client.open("GET", "/sse")
    with capturedLogs() as events:
        for _ in range(5):
            client.request("GET", "/sse")
        clock.advance(LOG_INTERVAL * 0.99)
        assert refusal_lines(events) == []
        clock.advance(LOG_INTERVAL * 0.01)
        assert refusal_lines(events) == ["streams refused: 5; --max-clients 1 reached"]
        clock.advance(0.5)
        client.request("GET", "/sse")
        clock.advance(0.3)
        client.request("GET", "/sse")
        clock.advance(LOG_INTERVAL)
        clock.advance(10 * LOG_INTERVAL)
    assert refusal_lines(events)[1:] == ["streams refused: 2; --max-clients 1 reached"]


def test_stopping_logs_the_refusals_not_yet_logged() -> None:
    client, _, limit, _, clock = limited()
    limit.startService()
    client.open("GET", "/sse")
    clock.advance(0)  # the hub's log line
    client.request("GET", "/sse")
    assert len(clock.getDelayedCalls()) == 1
    with capturedLogs() as events:
        limit.stopService()
    assert refusal_lines(events) == ["streams refused: 1; --max-clients 1 reached"]
    assert clock.getDelayedCalls() == []


@pytest.fixture
def server(reactor: Any) -> Generator[Server, None, None]:
    """
    The whole server on a real socket, with room for two streams.
    """
    hub = Hub(reactor, MemoryLog())
    limit = ClientLimit(hub.__len__, 2, clock=reactor, retry=RETRY)
    app = SSEApp(hub, Settings(static=STATIC, retry=RETRY), limit=limit)
    service, port = start_server(reactor, hub, app, heartbeat=0, keepalive=0)
    limit.setServiceParent(service)
    yield Server(hub, port)
    pytest_twisted.blockon(service.stopService())


@pytest_twisted.inlineCallbacks
def test_limit_on_real_sockets(server: Server) -> Generator[Any, Any, None]:
    """
    With two streams open, a third client gets C{200}, a C{retry:} of one
    to two intervals and end of file; the two streams carry on; once one
    closes, a new stream is accepted.
    """
    first = yield server.stream()
    second = yield server.stream()
    yield until(lambda: len(server.hub) == 2)
    third = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    third.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
    received = b""
    for _ in range(100):  # until end of file, at most 100 reads
        chunk = yield defer_recv(third)
        if not chunk:
            break
        received += chunk
    third.close()
    response = parse_response(received)
    assert response.status == 200
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    assert response.complete
    retry = parse(response.body).retry
    assert response.body == b"retry: %d\n\n" % retry
    assert retry is not None and RETRY <= retry < 2 * RETRY
    assert len(server.hub) == 2

    server.hub.publish("still here")
    for client in (first, second):
        yield client.wait_for(lambda c=client: "still here" in c.data())
    first.transport.loseConnection()  # type: ignore[union-attr]
    yield until(lambda: len(server.hub) == 1)
    fourth = yield server.stream()
    yield until(lambda: len(server.hub) == 2)
    yield fourth.wait_for_events(1)
    for client in (second, fourth):
        client.transport.loseConnection()  # type: ignore[union-attr]


def defer_recv(sock: socket.socket) -> defer.Deferred[bytes]:
    """
    Read from a blocking socket in a thread, so the reactor keeps serving.
    """
    from twisted.internet.threads import deferToThread

    return deferToThread(sock.recv, 65536).addTimeout(10, reactor_())
