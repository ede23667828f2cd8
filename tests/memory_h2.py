"""
Drive a site over HTTP/2 in memory: a real HTTP/2 client (the C{h2}
package) against Twisted's HTTP/2 server, on a fake clock, without sockets
or TLS.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection as ClientConnection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web._http2 import H2Connection
from twisted.web.server import Site

from sse_twisted.transport.http2 import StreamingH2Connection

_ROUNDS = 100
_MAX_CALLS_AT_ONE_TIME = 1000


class _SpinGuard:
    """
    The server's reactor: the clock, except that a server scheduling calls
    without end at one point of time (a loop that spins) fails the test
    rather than hanging it.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._time = -1.0
        self._calls = 0

    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(self, delay: float, call: Any, *args: Any) -> IDelayedCall:
        if self._clock.seconds() != self._time:
            self._time, self._calls = self._clock.seconds(), 0
        self._calls += 1
        if self._calls > _MAX_CALLS_AT_ONE_TIME:
            raise AssertionError("the server's sending loop spins")
        return self._clock.callLater(delay, call, *args)


class H2Client:
    """
    One HTTP/2 connection to a site, set up as Twisted sets it up once TLS
    has negotiated C{h2}.

    Everything the client receives is recorded per stream. Received data is
    acknowledged (so the server may send more) except on the streams in
    L{stalled}, which behave as a client that stops reading.
    """

    def __init__(
        self,
        site: Site,
        clock: Clock,
        window: int = 65535,
        server: type[H2Connection] = StreamingH2Connection,
    ) -> None:
        """
        @param site: The site to talk to; its C{timeOut} is the connection's
            idle time-out.
        @param clock: The clock of the server's timers and sending loop.
        @param window: The flow-control window the client grants each stream.
        @param server: The server's connection class.
        """
        self.clock = clock
        self.transport = StringTransport(
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)
        )
        self.server = server(_SpinGuard(clock))
        self.server.requestFactory = site.requestFactory
        self.server.site = site
        self.server.factory = site
        self.server.timeOut = site.timeOut
        self.server.callLater = clock.callLater
        self.server.makeConnection(self.transport)
        self.client = ClientConnection(
            H2Configuration(client_side=True, header_encoding=None)
        )
        self.client.initiate_connection()
        self.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.stalled: set[int] = set()
        self._unread: defaultdict[int, int] = defaultdict(int)
        self.headers: dict[int, dict[bytes, bytes]] = {}
        self.data: defaultdict[int, bytes] = defaultdict(bytes)
        self.ended: set[int] = set()
        self.reset: dict[int, int] = {}
        self.terminated: int | None = None
        self.pump()

    def get(self, path: str) -> int:
        """
        Send a C{GET}.

        @return: Its stream id.
        """
        stream_id: int = self.client.get_next_available_stream_id()
        self.client.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":path", path.encode("ascii")),
                (b":scheme", b"https"),
                (b":authority", b"test"),
            ],
            end_stream=True,
        )
        self.pump()
        return stream_id

    def cancel(self, stream_id: int) -> None:
        """
        Reset a stream, as a browser does when a page closes an
        C{EventSource}.
        """
        self.client.reset_stream(stream_id)
        self.pump()

    def read(self, stream_id: int) -> None:
        """
        Read a stalled stream again, from what it has received so far.
        """
        self.stalled.discard(stream_id)
        self._read(stream_id)
        self.pump()

    def _read(self, stream_id: int) -> None:
        self.client.acknowledge_received_data(self._unread.pop(stream_id), stream_id)

    def pump(self) -> None:
        """
        Let the server run its sending loop and exchange bytes until neither
        side has anything more to say (bounded).
        """
        for _ in range(_ROUNDS):
            self.clock.advance(0)
            to_server = self.client.data_to_send()
            if to_server:
                self.server.dataReceived(to_server)
                self.clock.advance(0)
            to_client = self.transport.value()
            self.transport.clear()
            if not to_server and not to_client:
                return
            for event in self.client.receive_data(to_client):
                self._record(event)
        raise AssertionError(f"still talking after {_ROUNDS} rounds")

    def disconnect(self) -> None:
        self.server.connectionLost(Failure(ConnectionDone()))

    def _record(self, event: object) -> None:
        if isinstance(event, ResponseReceived):
            self.headers[event.stream_id] = dict(event.headers)
        elif isinstance(event, DataReceived):
            self.data[event.stream_id] += event.data
            self._unread[event.stream_id] += event.flow_controlled_length
            if event.stream_id not in self.stalled:
                self._read(event.stream_id)
        elif isinstance(event, StreamEnded):
            self.ended.add(event.stream_id)
        elif isinstance(event, StreamReset):
            self.reset[event.stream_id] = event.error_code
        elif isinstance(event, ConnectionTerminated):
            self.terminated = event.error_code
