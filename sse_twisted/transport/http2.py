"""
HTTP/2 connections that keep their event streams: Twisted's HTTP/2 server,
with two of its behaviours changed for long-lived streams.

Over TLS, a L{twisted.web.server.Site} speaks HTTP/2 with the clients that
offer it by ALPN (browsers do). One connection then carries all of a
client's streams. Twisted's L{H2Connection}, as of Twisted 26.10:

  - cuts the connection after the site's idle time-out (60 s) without a
    frame either way, even while streams are open, where HTTP/1.1 waits
    while a response is under way;
  - once a stream has more data queued than its client's flow-control
    window takes (a client that reads slowly, or not at all), runs its
    sending loop on every turn of the reactor until the window opens: a
    stalled stream costs a whole core.

L{StreamingH2Connection} waits with the time-out while streams are open, and
lets a stream without window wait for its client's C{WINDOW_UPDATE}. Once
closed, it breaks the reference cycles that Twisted's connection and C{h2}'s
leave, so that reference counting frees it at once.
"""

from __future__ import annotations

import tempfile
from io import BytesIO
from typing import IO, Any, cast

from h2.events import WindowUpdated
from twisted.internet.interfaces import IAddress
from twisted.python.failure import Failure
from twisted.web._http2 import H2Connection
from twisted.web.http import _GenericHTTPChannelProtocol
from twisted.web.server import Site

from sse_twisted.transport.http1 import HeadChannel
from sse_twisted.transport.idle import IdleTimers


class StreamingH2Connection(H2Connection):
    """
    An HTTP/2 connection that times out only when it has no stream open,
    whose sending loop sleeps while the streams with data have no window,
    and which reference counting frees once it is closed.
    """

    def timeoutConnection(self) -> None:
        """
        The connection has been silent for the idle time-out: cut it if no
        stream is open, else wait another time-out.
        """
        if self.streams:
            self.setTimeout(self.timeOut)
        else:
            super().timeoutConnection()

    def _sendPrioritisedData(self, *args: object) -> None:
        # One turn of Twisted's loop: it sends a frame of the next stream in
        # the priority tree, if its window allows. When no data went out,
        # take the streams whose data waits for window out of the tree
        # (Twisted leaves them in, and the loop spins). Checking only then
        # keeps a broadcast linear in the number of streams.
        window = self.conn.outbound_flow_control_window
        super()._sendPrioritisedData(*args)
        if self.conn.outbound_flow_control_window != window:
            return
        room = self.conn.local_flow_control_window
        for stream_id, queue in self._outboundStreamQueues.items():
            # An end of stream needs no window.
            if queue and isinstance(queue[0], bytes) and room(stream_id) <= 0:
                self.priority.block(stream_id)

    def connectionLost(  # type: ignore[override]
        self,
        reason: Failure,
        _cancelTimeouts: bool = True,  # noqa: N803 (its name in H2Connection)
    ) -> None:
        """
        The connection is closed: let go of the sending loop's
        L{Deferreds<twisted.internet.defer.Deferred>} (their callback is a
        method of this connection) and of C{h2}'s table of its own methods
        by frame type. Frames that still come (after an idle time-out, before
        the transport closes) are then refused as unexpected, as after the
        time-out's C{GOAWAY} they are anyway.
        """
        super().connectionLost(reason, _cancelTimeouts)
        self._sendingDeferred = self._consumerBlocked = None
        getattr(self.conn, "_frame_dispatch_table", {}).clear()

    def _handleWindowUpdate(self, event: WindowUpdated) -> None:
        # Twisted puts the streams with data back into the loop; wake the
        # loop too if it sleeps (Twisted's never slept with data queued).
        super()._handleWindowUpdate(event)
        waiting = self._sendingDeferred
        if waiting is not None:
            self._sendingDeferred = None
            waiting.callback(event.stream_id)


class _Channel(_GenericHTTPChannelProtocol):
    """
    Speaks HTTP/1.x (through a L{HeadChannel}) or, once TLS has negotiated
    it, HTTP/2 through a L{StreamingH2Connection}.
    """

    def dataReceived(self, data: bytes) -> None:
        # Twisted makes its own H2Connection on the first bytes of a
        # connection that negotiated h2; it becomes a StreamingH2Connection
        # (the subclass adds no state) before any of its timers can fire.
        super().dataReceived(data)
        if type(self._channel) is H2Connection:
            self._channel.__class__ = StreamingH2Connection


BODY_IN_MEMORY = 100_000
"""Bodies announced shorter than this are kept in memory (Twisted's rule)."""


def _channel(site: Site) -> Any:
    return _Channel(HeadChannel())


class StreamingSite(Site):
    """
    A L{Site} whose HTTP/2 connections are L{StreamingH2Connection}s, and
    whose cleartext connections (on an L{sse_twisted.transport.eager}
    port, which asks for them) are HTTP/1.x channels alone.
    """

    protocol = _channel

    _idle_timers: IdleTimers | None = None

    def buildCleartextProtocol(self, addr: IAddress) -> HeadChannel:
        """
        Build the channel of a connection that never starts TLS, so never
        negotiates HTTP/2: a L{HeadChannel}, set up as C{buildProtocol}
        sets up the one it wraps in the switch between the two, whose idle
        timer waits for the end of the turn (its request has usually been
        read by then).
        """
        timers = self._idle_timers
        if timers is None:
            timers = self._idle_timers = IdleTimers(self.reactor)
        channel: Any = HeadChannel()
        channel.factory = self
        channel.site = self
        channel.requestFactory = self.requestFactory
        channel.timeOut = self.timeOut
        channel.callLater = self.reactor.callLater
        channel.idle_timers = timers
        return cast(HeadChannel, channel)

    def getContentFile(self, length: int | None) -> IO[bytes]:
        """
        Give a request the file its body is written to: memory for a body
        announced under L{BODY_IN_MEMORY} bytes (any request without one),
        else a temporary file, as Twisted's request chooses alone.
        Twisted's request asks its site first; without this method each
        request would raise and catch an C{AttributeError} to learn that
        the site does not choose.

        @param length: The length the request announced, if any.
        """
        if length is not None and length < BODY_IN_MEMORY:
            return BytesIO()
        return tempfile.TemporaryFile()
