"""
A closed stream leaves nothing behind: its L{EventStream}, request, HTTP
channel and connection are freed by reference counting alone, at once,
without waiting for a garbage collection. The server makes full collections
rare (L{sse_twisted.service.GarbageCollectorTuning}), so whatever a closed
stream left in a reference cycle would pile up under connection churn.

Real sockets on 127.0.0.1 and the real C{eagertcp} connections, and TLS
connections of C{sparingssl} (HTTP/1.1 and HTTP/2); the garbage collector
is off during each test, and the live objects are counted.
"""

from __future__ import annotations

import gc
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from typing import Any

import h2.connection
import pytest
import pytest_twisted
from certificate import Certificate
from h2.config import H2Configuration
from OpenSSL.SSL import Connection as OpenSSLConnection
from test_integration import STATIC, RawClient, Server, reactor_, tick, until
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.internet.tcp import Server as TCPServer
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogBeginner, globalLogPublisher

from sse_twisted.app import Settings, SSEApp
from sse_twisted.hub import Hub
from sse_twisted.service import StreamCloser
from sse_twisted.stream import EventStream
from sse_twisted.transport.eager import EagerServer, EagerTCPServerEndpoint
from sse_twisted.transport.http1 import HeadChannel
from sse_twisted.transport.http2 import StreamingH2Connection
from sse_twisted.transport.tls import _TLSConnection
from sse_twisted.web import BodyLimitedRequest

STREAM_CLASSES = (EventStream, BodyLimitedRequest, HeadChannel, EagerServer)
"""The objects of one stream over HTTP/1.1, server side."""

END = b"0\r\n\r\n"
"""The last chunk of a finished response."""


def census() -> Counter[str]:
    """
    @return: How many objects of each of L{STREAM_CLASSES} are alive.
    """
    return Counter(
        type(o).__name__ for o in gc.get_objects() if type(o) in STREAM_CLASSES
    )


@pytest.fixture
def without_collections() -> Iterator[None]:
    """
    No garbage collection during the test, so that only what reference
    counting frees is freed.

    Under pytest, C{twisted.logger} has not begun logging and keeps every
    event in a buffer, with the object that logged it (the stream that was
    dropped, say): a running server's log observers keep none. The buffer
    is set aside meanwhile.
    """
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    buffer = globalLogBeginner._temporaryObserver
    if buffer is not None:
        globalLogPublisher.removeObserver(buffer)
    try:
        yield
    finally:
        if buffer is not None:
            globalLogPublisher.addObserver(buffer)
        if enabled:
            gc.enable()


@pytest.fixture
def server(reactor: Any, without_collections: None) -> Iterator[Server]:
    """
    The site on C{eagertcp} connections, with a small backlog for slow
    clients.
    """
    hub = Hub(reactor)
    site = SSEApp(hub, Settings(static=STATIC, max_backlog=65536)).site()
    endpoint = EagerTCPServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = pytest_twisted.blockon(endpoint.listen(site))
    yield Server(hub, port.getHost().port)
    hub.close_all()
    pytest_twisted.blockon(port.stopListening())


@defer.inlineCallbacks
def open_streams(server: Server, count: int) -> Generator[Any, Any, list[RawClient]]:
    """
    Open C{count} streams and wait for their greetings.
    """
    clients = []
    for _ in range(count):
        client = yield server.stream()
        yield client.wait_for_events(1)
        clients.append(client)
    return clients


@defer.inlineCallbacks
def freed(
    before: Counter[str], count: Callable[[], Counter[str]] = census
) -> Generator[Any, Any, None]:
    """
    Wait (bounded) until no class of stream object, as C{count} counts
    them, has more live instances than in C{before}, and fail naming those
    that do. (Fewer is fine: an object of an earlier test may be freed
    meanwhile.)
    """
    for _ in range(100):
        if not count() - before:
            return
        yield deferLater(reactor_(), 0.05, lambda: None)
    raise AssertionError(f"left alive: {count() - before}")


def opened(before: Counter[str], streams: int) -> Counter[str]:
    """
    @return: What C{streams} open streams add to C{before}.
    """
    added = Counter({cls.__name__: streams for cls in STREAM_CLASSES})
    return before + added


@pytest_twisted.inlineCallbacks
def test_client_disconnect_frees_the_stream(
    server: Server,
) -> Generator[Any, Any, None]:
    """
    Streams whose clients close or reset their connections are freed as
    soon as the server sees them go.
    """
    before = census()
    closing, resetting = yield open_streams(server, 2)
    assert census() == opened(before, 2)
    closing.transport.loseConnection()
    resetting.transport.abortConnection()
    yield until(lambda: len(server.hub) == 0)
    yield freed(before)


@pytest_twisted.inlineCallbacks
def test_shutdown_frees_the_streams(server: Server) -> Generator[Any, Any, None]:
    """
    Streams ended as the server stops (by L{StreamCloser}, each with its
    farewell) are freed once their clients leave.
    """
    before = census()
    clients = yield open_streams(server, 3)
    closer = StreamCloser(server.hub, reactor_(), retry=3000)
    closer.startService()
    yield closer.stopService()
    for client in clients:
        yield client.wait_for(lambda c=client: c.received.endswith(END))
        assert b"retry: " in client.received.rpartition(b"Gotcha")[2]
        client.transport.loseConnection()
    yield freed(before)


@pytest_twisted.inlineCallbacks
def test_keep_alive_connection_frees_each_stream(
    server: Server,
) -> Generator[Any, Any, None]:
    """
    A stream ended by the server leaves its connection open for the next
    request (HTTP/1.1 keep-alive); a second stream on it, then the close,
    leave nothing.
    """
    before = census()
    [client] = yield open_streams(server, 1)
    server.hub.close_all()
    yield client.wait_for(lambda: client.received.endswith(END))
    client.transport.write(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
    yield client.wait_for(lambda: client.received.count(b"Gotcha") == 2)
    assert len(server.hub) == 1
    assert census() == opened(before, 1)
    client.transport.loseConnection()
    yield freed(before)


@pytest_twisted.inlineCallbacks
def test_dropped_slow_client_frees_the_stream(
    server: Server,
) -> Generator[Any, Any, None]:
    """
    A client that never reads is dropped once it falls too far behind, and
    its stream is freed then, before the client even closes its socket.
    """
    before = census()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    stalled.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
    yield until(lambda: len(server.hub) == 1)
    chunk = "z" * 65536
    for n in range(200):  # 12.5 MiB: past the socket buffers and the backlog
        server.hub.publish(f"{n} {chunk}")
        yield tick()
        if not server.hub:
            break
    assert len(server.hub) == 0
    try:
        yield freed(before)
    finally:
        stalled.close()


TLS_CLASSES = (
    EventStream,
    BodyLimitedRequest,
    HeadChannel,
    StreamingH2Connection,
    _TLSConnection,
    OpenSSLConnection,
    TCPServer,
)
"""The objects of one stream over TLS (HTTP/1.1 or HTTP/2), server side."""


def tls_census() -> Counter[str]:
    """
    @return: How many objects of each of L{TLS_CLASSES}, and how many
        server-side C{h2} connections, are alive.
    """
    alive: Counter[str] = Counter()
    for o in gc.get_objects():
        if type(o) in TLS_CLASSES:
            alive[type(o).__name__] += 1
        elif type(o) is h2.connection.H2Connection and not o.config.client_side:
            alive["h2"] += 1
    return alive


@pytest.fixture
def tls_server(
    reactor: Any,
    certificate: Certificate,
    without_collections: None,
    clean_failures: None,
) -> Iterator[Server]:
    """
    The site on a C{sparingssl} port, as C{--port ssl:...} serves it, with
    Twisted's own C{Failure.cleanFailure}.
    """
    hub = Hub(reactor)
    site = SSEApp(hub, Settings(static=STATIC)).site()
    endpoint = serverFromString(reactor, "sparing" + certificate.endpoint())
    port = pytest_twisted.blockon(endpoint.listen(site))
    yield Server(hub, port.getHost().port)
    hub.close_all()
    pytest_twisted.blockon(port.stopListening())


def tls_stream(port: int, protocol: str) -> ssl.SSLSocket:
    """
    Open C{/sse} over TLS, speaking C{protocol} (chosen by ALPN), and read
    until the greeting. Blocking: run it in a thread.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([protocol])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == protocol
    if protocol == "h2":
        client = h2.connection.H2Connection(H2Configuration(client_side=True))
        client.initiate_connection()
        headers = [(":method", "GET"), (":path", "/sse")]
        headers += [(":scheme", "https"), (":authority", "localhost")]
        client.send_headers(1, headers, end_stream=True)
        sock.sendall(client.data_to_send())
    else:
        sock.sendall(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
    received = b""
    for _ in range(100):
        if b"Gotcha" in received:
            return sock
        received += sock.recv(65536)
    raise AssertionError(f"no greeting: {received!r}")


def tls_close(sock: ssl.SSLSocket, close_notify: bool) -> None:
    """
    Close a TLS connection, with TLS's C{close_notify} first or, as a
    client that goes away does, without.
    """
    if close_notify:
        sock = sock.unwrap()  # type: ignore[assignment]
    sock.close()


@pytest.mark.parametrize(
    "protocol,close_notify",
    [("http/1.1", True), ("http/1.1", False), ("h2", True), ("h2", False)],
)
@pytest_twisted.inlineCallbacks
def test_closed_tls_connection_frees_the_stream(
    tls_server: Server, protocol: str, close_notify: bool
) -> Generator[Any, Any, None]:
    """
    A stream over TLS, over HTTP/1.1 or HTTP/2, is freed with its TLS
    connection (and HTTP/2 connection) as soon as the server sees the client
    go, whether the client ends TLS properly or just closes its socket.
    """
    before = tls_census()
    sock = yield deferToThread(tls_stream, tls_server.port, protocol)
    yield until(lambda: len(tls_server.hub) == 1)
    added = tls_census() - before
    assert added["EventStream"] == added["_TLSConnection"] == 1
    assert added["Connection"] == 1  # pyOpenSSL's
    assert added["StreamingH2Connection"] == added["h2"] == (protocol == "h2")
    yield deferToThread(tls_close, sock, close_notify)
    yield until(lambda: len(tls_server.hub) == 0)
    yield freed(before, tls_census)


@pytest.mark.parametrize("protocol", ["http/1.1", "h2"])
@pytest_twisted.inlineCallbacks
def test_tls_stream_ended_by_the_server_is_freed(
    tls_server: Server, protocol: str
) -> Generator[Any, Any, None]:
    """
    A stream over TLS that the server ends (as it does when it stops) is
    freed, with its connection, once the client has gone.
    """
    before = tls_census()
    sock = yield deferToThread(tls_stream, tls_server.port, protocol)
    yield until(lambda: len(tls_server.hub) == 1)
    tls_server.hub.close_all()
    yield until(lambda: len(tls_server.hub) == 0)
    yield deferToThread(tls_close, sock, False)
    yield freed(before, tls_census)
