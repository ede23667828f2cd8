"""
Streams over HTTP/2, in memory on a fake clock: a real HTTP/2 client (the
C{h2} package) against the site through Twisted's HTTP/2 server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection as ClientConnection
from h2.errors import ErrorCodes
from memory_h2 import H2Client
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.web._http2 import H2Connection
from twisted.web.server import Site

from sse_twisted.app import Settings, SSEApp
from sse_twisted.hub import Hub
from sse_twisted.log import MemoryLog
from sse_twisted.testing import parse
from sse_twisted.transport.http2 import StreamingH2Connection

STATIC = FilePath(str(Path(__file__).parent.parent / "static"))
GOTCHA = '{"message": "Gotcha"}'
IDLE_TIMEOUT = 60


def serve(clock: Clock, max_backlog: int = 1 << 20) -> tuple[Hub, Site]:
    hub = Hub(clock, MemoryLog(instance="t"))
    site = SSEApp(hub, Settings(static=STATIC, max_backlog=max_backlog)).site()
    site.reactor = clock
    return hub, site


def events(client: H2Client, stream_id: int) -> list[str]:
    return [event.data for event in parse(client.data[stream_id]).events]


def test_stream_over_http2() -> None:
    """
    C{GET /sse} over HTTP/2 answers C{200} with an event stream that starts
    with the greeting and carries what is published.
    """
    clock = Clock()
    hub, site = serve(clock)
    client = H2Client(site, clock)
    stream = client.get("/sse")
    assert client.headers[stream][b":status"] == b"200"
    assert client.headers[stream][b"content-type"] == (
        b"text/event-stream; charset=utf-8"
    )
    assert len(hub) == 1
    hub.publish('"over h2"')
    client.pump()
    assert events(client, stream) == [GOTCHA, '"over h2"']
    assert stream not in client.ended


def test_keepalive_comment_reaches_an_http2_stream() -> None:
    """
    A quiet stream over HTTP/2 gets the keep-alive comment, as over
    HTTP/1.1.
    """
    clock = Clock()
    hub, site = serve(clock)
    client = H2Client(site, clock)
    stream = client.get("/sse")
    clock.advance(15)
    assert hub.send_keepalives(15) == 1
    client.pump()
    assert parse(client.data[stream]).comments == [""]


def test_slow_stream_is_reset_alone() -> None:
    """
    A stream whose client stops reading is held back by HTTP/2 flow control;
    once it is C{max_backlog} bytes further behind it is reset at once
    (RST_STREAM, without waiting for the data queued before), and
    unsubscribed. The other stream on the same connection stays open and
    gets every event.
    """
    clock = Clock()
    hub, site = serve(clock, max_backlog=4000)
    client = H2Client(site, clock, window=2000)
    slow, fast = client.get("/sse"), client.get("/sse")
    client.stalled.add(slow)
    payload = '"' + "x" * 998 + '"'
    published = 0
    while slow not in client.reset:
        assert published < 10, "the slow stream was never reset"
        hub.publish(payload)
        published += 1
        client.pump()
    # The window, then more than max_backlog bytes, of ~1 kB events.
    assert published >= 6
    assert client.reset == {slow: ErrorCodes.NO_ERROR}
    assert slow not in client.ended
    assert len(client.data[slow]) <= 2000
    assert len(hub) == 1
    hub.publish('"after"')
    client.pump()
    assert events(client, fast) == [GOTCHA] + [payload] * published + ['"after"']
    assert not client.transport.disconnecting
    assert client.terminated is None


@pytest.mark.parametrize(
    "window,size",
    [
        (2000, 3000),  # the stream's window fills up
        (1 << 20, 100_000),  # the connection's window (64 KiB) fills up
    ],
)
def test_stream_without_window_waits_for_its_client(window: int, size: int) -> None:
    """
    An event larger than the client's window (the stream's, or the whole
    connection's) is sent up to the window; the server then waits, without
    spinning, until the client reads (sends C{WINDOW_UPDATE}), and sends
    the rest with no further write.
    """
    clock = Clock()
    hub, site = serve(clock)
    client = H2Client(site, clock, window=window)
    stream = client.get("/sse")
    client.stalled.add(stream)
    opening = len(client.data[stream])
    payload = '"' + "x" * (size - 2) + '"'
    hub.publish(payload)
    client.pump()
    assert 0 < len(client.data[stream]) - opening < size
    assert not [c for c in clock.getDelayedCalls() if c.getTime() <= clock.seconds()]
    client.read(stream)
    assert events(client, stream) == [GOTCHA, payload]


def test_twisted_alone_spins_on_a_stream_without_window() -> None:
    """
    Why L{StreamingH2Connection} changes the sending loop: Twisted's own
    HTTP/2 connection runs it without end while a stream waits for window.
    """
    clock = Clock()
    hub, site = serve(clock)
    client = H2Client(site, clock, window=2000, server=H2Connection)
    client.stalled.add(client.get("/sse"))
    hub.publish('"' + "x" * 2998 + '"')
    with pytest.raises(AssertionError, match="spins"):
        client.pump()


def test_idle_connection_with_an_open_stream_is_kept() -> None:
    """
    An HTTP/2 connection with an open stream is not cut by the site's idle
    time-out, however long the stream stays quiet (here: no keep-alive).
    Once its last stream is closed, the time-out applies again.
    """
    clock = Clock()
    hub, site = serve(clock)
    client = H2Client(site, clock)
    stream = client.get("/sse")
    for _ in range(10):
        clock.advance(IDLE_TIMEOUT)
        client.pump()
    assert not client.transport.disconnecting
    hub.publish('"still here"')
    client.pump()
    assert events(client, stream) == [GOTCHA, '"still here"']
    client.cancel(stream)
    clock.advance(0)
    assert len(hub) == 0
    clock.advance(IDLE_TIMEOUT - 1)
    assert not client.transport.disconnecting
    clock.advance(1)
    client.pump()
    assert client.transport.disconnecting
    assert client.terminated == ErrorCodes.NO_ERROR


def test_twisted_alone_cuts_a_quiet_stream() -> None:
    """
    Why L{StreamingH2Connection} exists: Twisted's own HTTP/2 connection
    cuts an open stream after the idle time-out without a frame.
    """
    clock = Clock()
    _, site = serve(clock)
    client = H2Client(site, clock, server=H2Connection)
    client.get("/sse")
    clock.advance(IDLE_TIMEOUT)
    client.pump()
    assert client.transport.disconnecting
    assert client.terminated == ErrorCodes.PROTOCOL_ERROR


@pytest.mark.parametrize("protocol", [b"h2", b"http/1.1", None])
def test_site_speaks_what_tls_negotiated(protocol: bytes | None) -> None:
    """
    The site's connections switch to a L{StreamingH2Connection} when TLS
    negotiated C{h2}, and stay HTTP/1.1 otherwise.
    """
    _, site = serve(Clock())
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    transport.negotiatedProtocol = protocol  # type: ignore[attr-defined]
    channel = site.buildProtocol(transport.getPeer())
    assert channel is not None
    channel.makeConnection(transport)
    if protocol == b"h2":
        client = ClientConnection(H2Configuration(client_side=True))
        client.initiate_connection()
        channel.dataReceived(client.data_to_send())
        assert type(channel._channel) is StreamingH2Connection
    else:
        channel.dataReceived(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert transport.value().startswith(b"HTTP/1.1 200 OK")
    channel.connectionLost(Failure(ConnectionDone()))
