"""
Integration tests: the whole server on a real socket on 127.0.0.1, driven by
a raw HTTP client, with the real reactor.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from memory_http import dechunk, parse_response
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from sse_twisted.app import Settings, SSEApp
from sse_twisted.fanout import choose_fanout
from sse_twisted.hub import Hub
from sse_twisted.service import sse_service
from sse_twisted.tap import DEFAULT_BACKLOG
from sse_twisted.testing import parse
from sse_twisted.transport.eager import EagerTCPServerEndpoint

STATIC = FilePath(str(Path(__file__).parent.parent / "static"))
TIMEOUT = 10.0
GOTCHA = '{"message": "Gotcha"}'
HELLO = '{"message": "Hello hello!"}'
CHANGED = '{"message": "Something changed"}'


class RawClient(Protocol):
    """
    A client that sends one request and collects the raw bytes it gets.
    """

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._waiters: list[tuple[Callable[[], bool], defer.Deferred[None]]] = []

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for waiter in list(self._waiters):
            if waiter[0]():
                self._waiters.remove(waiter)
                waiter[1].callback(None)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(None)

    def body(self) -> bytes:
        return dechunk(self.received.partition(b"\r\n\r\n")[2])[0]

    def data(self) -> list[str]:
        return [e.data for e in parse(self.body()).events]

    def wait_for(self, predicate: Callable[[], bool]) -> defer.Deferred[None]:
        """
        Fire when C{predicate} holds, or fail after L{TIMEOUT} seconds.
        """
        from twisted.internet import reactor

        waiter: defer.Deferred[None] = defer.Deferred()
        if predicate():
            waiter.callback(None)
            return waiter
        self._waiters.append((predicate, waiter))
        return waiter.addTimeout(TIMEOUT, reactor)  # type: ignore[arg-type]

    def wait_for_events(self, count: int) -> defer.Deferred[None]:
        return self.wait_for(lambda: len(self.data()) >= count)


class Server:
    def __init__(self, hub: Hub, port: int) -> None:
        self.hub = hub
        self.port = port

    @defer.inlineCallbacks
    def connect(self, request: bytes) -> Generator[Any, Any, RawClient]:
        from twisted.internet import reactor

        client = RawClient(request)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        yield endpoint.connect(Factory.forProtocol(lambda: client))
        return client

    def stream(
        self, path: str = "/sse", headers: str = ""
    ) -> defer.Deferred[RawClient]:
        request = f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode()
        return self.connect(request)

    @defer.inlineCallbacks
    def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = ""
    ) -> Generator[Any, Any, Any]:
        head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        client = yield self.connect(head.encode() + body)
        yield client.lost.addTimeout(TIMEOUT, reactor_())
        return parse_response(client.received)


def reactor_() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def server(reactor: Any) -> Generator[Server, None, None]:
    """
    The whole server (site, heartbeat every 0.2 s, keep-alive) on an
    ephemeral eager TCP port of 127.0.0.1, with the fan-out the environment
    chooses.
    """
    fanout = choose_fanout()
    hub = Hub(reactor, groups=fanout.groups)
    app = SSEApp(hub, Settings(static=STATIC, fanout=fanout.name))
    service, port = start_server(reactor, hub, app)
    yield Server(hub, port)
    pytest_twisted.blockon(service.stopService())


def start_server(
    reactor: Any, hub: Hub, app: SSEApp, **timers: float
) -> tuple[MultiService, int]:
    """
    Start the whole server on an ephemeral port of 127.0.0.1, by default
    with a heartbeat every 0.2 s and keep-alive.

    @param timers: C{heartbeat}, C{keepalive} or C{retry} for L{sse_service}.
    @return: The running service and its port.
    """
    listening: list[IListeningPort] = []

    class RecordingEndpoint:
        def listen(self, factory: Any) -> defer.Deferred[IListeningPort]:
            endpoint = EagerTCPServerEndpoint(
                reactor, 0, backlog=DEFAULT_BACKLOG, interface="127.0.0.1"
            )
            return endpoint.listen(factory).addCallback(
                lambda port: listening.append(port) or port
            )

    settings: dict[str, Any] = {"heartbeat": 0.2, "keepalive": 15, "retry": 3000}
    service = sse_service(
        hub,
        app.site(),
        RecordingEndpoint(),  # type: ignore[arg-type]
        clock=reactor,
        **{**settings, **timers},
    )
    service.startService()
    return service, listening[0].getHost().port


def tick() -> defer.Deferred[None]:
    """
    Let the reactor turn once, so that clients read.
    """
    return deferLater(reactor_(), 0, lambda: None)


@defer.inlineCallbacks
def until(predicate: Callable[[], bool]) -> Generator[Any, Any, None]:
    """
    Wait for a server-side condition: checked every 10 ms, at most TIMEOUT.
    """
    for _ in range(int(TIMEOUT / 0.01)):
        if predicate():
            return
        yield deferLater(reactor_(), 0.01, lambda: None)
    raise AssertionError("condition not met in time")


@pytest_twisted.inlineCallbacks
def test_page_is_served(server: Server) -> Generator[Any, Any, None]:
    """
    C{GET /} serves the page, C{GET /client.js} its script.
    """
    page = yield server.request("GET", "/")
    assert page.status == 200
    assert page.header("content-type").startswith("text/html")
    assert b"Send Message" in page.body
    script = yield server.request("GET", "/client.js")
    assert script.status == 200
    assert b"new EventSource(" in script.body


@pytest_twisted.inlineCallbacks
def test_range_header_not_ascii_gets_the_whole_page(
    server: Server,
) -> Generator[Any, Any, None]:
    """
    A C{Range} header that is not ASCII is malformed and ignored, as Twisted
    ignores malformed ones: the whole page, not a 500; a good range still
    gets its part.
    """
    answers = []
    for byte_range in (b"\xff", b"bytes=\xff-1", b"bytes=0-4"):
        head = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        client = yield server.connect(head + b"Range: " + byte_range + b"\r\n\r\n")
        yield client.lost.addTimeout(TIMEOUT, reactor_())
        answers.append(parse_response(client.received))
    whole, also_whole, part = answers
    assert (whole.status, also_whole.status, part.status) == (200, 200, 206)
    assert b"Send Message" in whole.body and whole.body == also_whole.body
    assert part.body == whole.body[:5]


@pytest_twisted.inlineCallbacks
def test_stream_greets_then_heartbeats(server: Server) -> Generator[Any, Any, None]:
    client = yield server.stream()
    yield client.wait_for_events(2)
    head = parse_response(client.received)
    assert head.status == 200
    assert head.header("content-type") == "text/event-stream; charset=utf-8"
    assert head.header("cache-control") == "no-cache"
    assert client.data()[:2] == [GOTCHA, HELLO]
    client.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.inlineCallbacks
def test_one_post_reaches_two_clients(server: Server) -> Generator[Any, Any, None]:
    clients = [(yield server.stream()), (yield server.stream())]
    for client in clients:
        yield client.wait_for_events(1)
    response = yield server.request(
        "POST", "/api", b'{"message": "Hey there"}', "application/json"
    )
    assert response.status == 200
    assert json.loads(response.body)["delivered"] == 2
    for client in clients:
        yield client.wait_for(lambda c=client: CHANGED in c.data())
        client.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.inlineCallbacks
def test_disconnect_leaves_the_registry(server: Server) -> Generator[Any, Any, None]:
    client = yield server.stream()
    yield client.wait_for_events(1)
    assert len(server.hub) == 1
    client.transport.loseConnection()  # type: ignore[union-attr]
    yield until(lambda: len(server.hub) == 0)


@pytest_twisted.inlineCallbacks
def test_abrupt_disconnect_mid_stream(server: Server) -> Generator[Any, Any, None]:
    """
    A client that vanishes (connection reset) while large events are being
    written is dropped; the server and the other clients carry on.
    """
    vanishing = yield server.stream()
    staying = yield server.stream()
    yield vanishing.wait_for_events(1)
    yield staying.wait_for_events(1)
    big = "x" * 200_000
    server.hub.publish(big)
    vanishing.transport.abortConnection()  # type: ignore[union-attr]
    for n in range(3):
        server.hub.publish(f"after {n}")
    yield until(lambda: len(server.hub) == 1)
    yield staying.wait_for(lambda: "after 2" in staying.data())
    assert [d for d in staying.data() if d != HELLO][1:] == [big] + [
        f"after {n}" for n in range(3)
    ]
    staying.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.inlineCallbacks
def test_client_that_never_reads_is_dropped_without_holding_up_others(
    server: Server,
) -> Generator[Any, Any, None]:
    """
    A client that stops reading fills its own buffers, then falls more than
    the allowed backlog behind and is dropped; a client that reads gets
    every event meanwhile.
    """
    stalled = stalled_stream(server.port)
    reading = yield server.stream()
    yield until(lambda: len(server.hub) == 2)
    chunk = "y" * 65536
    for n in range(200):  # 12.5 MiB: past the socket buffers and the backlog
        server.hub.publish(f"{n} {chunk}")
        yield tick()
    server.hub.publish("done")
    # (Heartbeats may follow it, so look near the end, not at the very end.)
    yield reading.wait_for(lambda: b"data: done\n\n" in reading.received[-65536:])
    numbers = [d.split()[0] for d in reading.data() if d[0].isdigit()]
    assert numbers == [str(n) for n in range(200)]
    yield until(lambda: len(server.hub) == 1)
    stalled.close()
    reading.transport.loseConnection()  # type: ignore[union-attr]


def stalled_stream(port: int) -> socket.socket:
    """
    Open a stream on a plain socket that never reads, with a small receive
    buffer (which also stops the kernel from growing it to many megabytes).
    """
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
    return stalled


BAD = [
    ("POST", "/api", b"{oops", "application/json", 400),
    ("POST", "/api", b"{}", "text/plain", 415),
    ("POST", "/api", b"[" + b"0," * 400_000 + b"0]", "application/json", 413),
    ("GET", "/api", b"", "", 405),
    ("PATCH", "/sse", b"", "", 405),
    ("GET", "/no/such/path", b"", "", 404),
]


@pytest_twisted.inlineCallbacks
def test_bad_input_then_valid_post(server: Server) -> Generator[Any, Any, None]:
    """
    Each bad request gets its status; the stream sees nothing of them, and a
    valid POST afterwards still broadcasts.
    """
    client = yield server.stream("/sse", "")
    yield client.wait_for_events(1)
    for method, path, body, content_type, status in BAD:
        response = yield server.request(method, path, body, content_type)
        assert (method, path, response.status) == (method, path, status)
        assert "error" in json.loads(response.body)
    assert CHANGED not in client.data()
    response = yield server.request("POST", "/api", b"{}", "application/json")
    assert response.status == 200
    yield client.wait_for(lambda: CHANGED in client.data())
    client.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.inlineCallbacks
def test_a_crowd_coming_back_misses_nothing(
    server: Server,
) -> Generator[Any, Any, None]:
    """
    Sixty clients come back at once with the same C{Last-Event-ID} while a
    stream stays open, and events are published right after: every stream
    gets every event once, in order (held while the crowd comes back).
    """
    staying = yield server.stream()
    yield server.request("POST", "/publish", b'{"data": "e0"}', "application/json")
    yield staying.wait_for(lambda: "e0" in staying.data())
    last_id = parse(staying.body()).last_event_id
    # Connected and asked at once, before the server's next turn: it takes
    # them all in one, a crowd (live events are held for it).
    request = f"GET /sse HTTP/1.1\r\nHost: t\r\nLast-Event-ID: {last_id}\r\n\r\n"
    returning = [RawClient(request.encode()) for _ in range(60)]
    for client in returning:
        with socket.create_connection(("127.0.0.1", server.port)) as connected:
            connected.setblocking(False)
            reactor_().adoptStreamConnection(
                connected.fileno(),
                socket.AF_INET,
                Factory.forProtocol(lambda c=client: c),  # type: ignore[misc]
            )
    yield until(lambda: len(server.hub) == 61)
    publishing = [
        server.request(
            "POST",
            "/publish",
            json.dumps({"data": f"e{n}"}).encode(),
            "application/json",
        )
        for n in range(1, 4)
    ]
    answers = yield defer.gatherResults(publishing)
    assert all(answer.status == 200 for answer in answers)
    for client in [staying, *returning]:
        yield client.wait_for(lambda c=client: {"e1", "e2", "e3"} <= set(c.data()))
    # The three publishes race: the log's order is the one the open stream saw.
    order = [d for d in staying.data() if d.startswith("e")]
    assert order[0] == "e0"
    assert sorted(order[1:]) == ["e1", "e2", "e3"]
    for client in returning:
        assert [d for d in client.data() if d.startswith("e")] == order[1:]
        client.transport.loseConnection()  # type: ignore[union-attr]
    staying.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.inlineCallbacks
def test_resume_after_disconnect_while_publishing(
    server: Server,
) -> Generator[Any, Any, None]:
    """
    Events published while a client is away arrive, once and in order, when
    it comes back with C{Last-Event-ID}; then live ones follow.
    """
    first = yield server.stream()
    yield first.wait_for_events(1)
    for n in range(3):
        yield server.request(
            "POST",
            "/publish",
            json.dumps({"data": f"e{n}"}).encode(),
            "application/json",
        )
    yield first.wait_for(lambda: "e2" in first.data())
    last_id = parse(first.body()).last_event_id
    first.transport.loseConnection()  # type: ignore[union-attr]
    yield until(lambda: len(server.hub) == 0)
    for n in range(3, 6):
        yield server.request(
            "POST",
            "/publish",
            json.dumps({"data": f"e{n}"}).encode(),
            "application/json",
        )
    again = yield server.stream("/sse", f"Last-Event-ID: {last_id}\r\n")
    yield server.request("POST", "/publish", b'{"data": "e6"}', "application/json")
    yield again.wait_for(lambda: "e6" in again.data())
    assert [d for d in again.data() if d.startswith("e")] == [
        f"e{n}" for n in range(3, 7)
    ]
    again.transport.loseConnection()  # type: ignore[union-attr]
