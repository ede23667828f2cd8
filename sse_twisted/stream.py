"""
One open C{text/event-stream} HTTP response, as an L{sse_twisted.hub.EventSink}.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Request
from zope.interface import implementer

from sse_twisted.hub import EventSink, write_each
from sse_twisted.transport.eager import EagerServer
from sse_twisted.transport.http1 import StreamHead

if TYPE_CHECKING:
    from sse_twisted._fanout import DirectSet, Lease

DEFAULT_MAX_BACKLOG = 1024 * 1024
"""
How many bytes a stream may fall behind, beyond what the connection itself
buffers, before it is dropped.
"""


@lru_cache(maxsize=8)
def _chunk(data: bytes) -> bytes:
    """
    Frame C{data} as one HTTP/1.1 chunk. Cached, so that an event written to
    thousands of streams is framed once.
    """
    return b"%x\r\n%s\r\n" % (len(data), data)


@implementer(IPushProducer)
class EventStream:
    """
    An HTTP response kept open to carry events, until the server ends it with
    L{close} or the client goes away.

    Once the headers are out, events on HTTP/1.x go straight to the
    connection, framed once per event, rather than through
    L{Request.write}, which would frame each copy again.

    Once the response is over, the stream lets go of the request, its
    channel and its connection, which hold it in turn (as their producer):
    reference counting then frees them all at once, instead of leaving a
    cycle for the next full garbage collection, which the server makes rare.

    A client that reads slower than events come makes the connection's
    buffer (over HTTP/2, the stream's flow-control window) fill up; the
    connection then pauses this stream (it is its producer). Events still go
    out, but once more than C{max_backlog} bytes have piled up during one
    pause the connection is dropped (over HTTP/2, only this stream is reset):
    the client reconnects by itself and resumes from the history, and the
    server does not hold an unbounded buffer for it.

    Conflation: once a keyed event of a conflated topic comes while the
    stream is paused, the stream stops handing events to the connection
    and queues them itself, in order, until the connection takes writes
    again; a queued event is discarded when a newer one of the same
    (topic, key) is queued. That queue counts against C{max_backlog} too.
    """

    __slots__ = (
        "_backlog",
        "_channel",
        "_chunked",
        "_conflated",
        "_dropped",
        "_ended",
        "_lease",
        "_max_backlog",
        "_open",
        "_paused",
        "_pending",
        "_pending_bytes",
        "_request",
        "_sequence",
        "_transport",
    )

    log = Logger()

    def __init__(
        self,
        request: Request,
        ended: Callable[[EventStream], object],
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        dropped: Callable[[], object] | None = None,
        conflated: Callable[[int], object] | None = None,
    ) -> None:
        """
        @param request: The request whose response carries the events; its
            headers must be set already.
        @param ended: Called with this stream once the response is over,
            whoever ended it.
        @param max_backlog: How many bytes may pile up while the connection
            has paused the stream before it is dropped.
        @param dropped: Called if the stream is dropped for a slow client.
        @param conflated: Called with how many queued events a newer one
            replaced.
        """
        self._request: Request | None = request
        self._channel: HTTPChannel | None = None
        self._transport: ITransport | None = None
        self._chunked = False
        self._open = True
        self._paused = False
        self._backlog = 0
        self._max_backlog = max_backlog
        self._ended = ended
        self._dropped = dropped
        self._conflated = conflated
        self._pending: OrderedDict[Hashable, bytes] | None = None
        self._pending_bytes = 0
        self._sequence = 0
        self._lease: Lease | None = None
        # A request of ssedemo's site tells its end without a Deferred
        # (sse_twisted.web.BodyLimitedRequest.when_over).
        when_over = getattr(request, "when_over", None)
        if when_over is None:
            request.notifyFinish().addBoth(self._end)
        else:
            when_over(self._end)

    def _end(self, reason: object) -> None:
        self._open = False
        self._request = self._channel = self._transport = self._lease = None
        self._pending = None
        self._ended(self)

    def start(self, opening: bytes, head: StreamHead | None = None) -> None:
        """
        Send the headers and the first bytes.

        @param opening: Such as a C{retry:} field and a greeting.
        @param head: The response's headers, if they are not set already.
        """
        request = self._request
        assert request is not None, "the response is over before it began"
        if head is None:
            request.write(opening)
        else:
            head.start(request, opening)
        request.registerProducer(self, True)
        channel = request.channel
        if isinstance(channel, HTTPChannel):
            self._channel = channel
            self._transport = channel.transport
            self._chunked = bool(request.chunked)

    def write(self, data: bytes, conflate: Hashable | None = None) -> None:
        """
        Queue C{data} for the client. After a disconnect, it is dropped.

        @param data: Encoded events or comments.
        @param conflate: The (topic, key) of a keyed event of a conflated
            topic, which a newer one may replace while the client is behind.
        """
        if self._pending is not None or (self._paused and conflate is not None):
            self._enqueue(data, conflate)
            return
        if self._paused:
            self._backlog += len(data)
            if self._backlog > self._max_backlog:
                if self._open:
                    self._drop()
                return
        self._send(data)

    def _enqueue(self, data: bytes, conflate: Hashable | None) -> None:
        """
        Queue C{data} in the stream's own queue, replacing the queued event
        of the same C{conflate}, if any.
        """
        pending = self._pending
        if pending is None:
            pending = self._pending = OrderedDict()
        if conflate is None:
            self._sequence += 1
            conflate = self._sequence
        else:
            replaced = pending.pop(conflate, None)
            if replaced is not None:
                self._pending_bytes -= len(replaced)
                if self._conflated is not None:
                    self._conflated(1)
        pending[conflate] = data
        self._pending_bytes += len(data)
        if self._backlog + self._pending_bytes > self._max_backlog and self._open:
            self._drop()

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            if self._request is not None:
                self._request.write(data)
        elif self._chunked:
            transport.write(_chunk(data))
        else:
            transport.write(data)

    def lease(self, make: type[Lease]) -> Lease | None:
        """
        The lease on this stream's connection, for the compiled fan-out to
        send this stream's chunks to it directly.

        @param make: The lease type.
        @return: The lease; C{None} where the stream is written by Python:
            TLS (and so HTTP/2), HTTP/1.0, transports other than eager TCP,
            a stream that is over.
        """
        transport = self._transport
        if (
            self._lease is None
            and self._open
            and self._chunked
            and isinstance(transport, EagerServer)
        ):
            self._lease = transport.lease(make)
            if self._lease is not None:
                self._lease.paused = self._paused
        return self._lease

    def _queue(self, data: bytes) -> None:
        """
        Queue C{data} on the connection without trying to send it first: the
        rest of a chunk that the compiled fan-out sent in part.
        """
        transport = self._transport
        assert isinstance(transport, EagerServer)
        transport.queue(data)

    def close(self, farewell: bytes = b"") -> None:
        """
        Write C{farewell} and finish the response. Does nothing if the
        response is over already.

        @param farewell: Bytes to write first, such as a C{retry:} field.
        """
        request = self._request
        if request is None or not self._open:
            return
        if farewell:
            self.write(farewell)
        request.unregisterProducer()
        request.finish()

    def pauseProducing(self) -> None:
        """
        The connection's buffer is full: count what piles up from now on.
        (Twisted's transports say so again on every write while full.)
        """
        if not self._paused:
            self._paused = True
            self._backlog = 0
            if self._lease is not None:
                self._lease.paused = True

    def resumeProducing(self) -> None:
        """
        The connection's buffer has drained: send what the stream queued,
        until the connection is full again.
        """
        self._paused = False
        pending = self._pending
        while pending and not self._paused and self._open:
            _, data = pending.popitem(last=False)
            self._pending_bytes -= len(data)
            self._send(data)
        if pending and not self._paused:
            return  # the stream is over
        if not pending:
            self._pending = None
        if self._lease is not None:
            self._lease.paused = self._paused

    def stopProducing(self) -> None:
        """
        The connection is going away; L{_end} follows.
        """

    def _drop(self) -> None:
        self.log.warn(
            "dropping a stream {backlog} bytes behind: its client reads too slowly",
            backlog=self._backlog,
        )
        self._open = False
        if self._dropped is not None:
            self._dropped()
        if self._channel is not None:
            self._channel.forceAbortClient()
            return
        # HTTP/2: the request's channel is its stream, which a reset
        # (RST_STREAM) ends at once, alone; losing it would only queue the
        # stream's end behind the data the client does not take. Twisted does
        # not tell the request of a reset it sends: tell it in the next turn,
        # as for an aborted TCP connection (later writes fall in the backlog).
        request = self._request
        assert request is not None and request.site is not None
        h2_stream: Any = request.channel
        h2_stream.abortConnection()
        request.site.reactor.callLater(
            0, request.connectionLost, Failure(ConnectionAborted())
        )


class StreamGroup:
    """
    The streams of one topic (an L{sse_twisted.hub.SinkGroup}) that frames
    each event as an HTTP/1.1 chunk once, and sends it to every stream it
    can by one loop in C (C{sse_twisted._fanout.DirectSet}).

    In that loop: chunked streams on eager TCP connections whose queue is
    empty and whose producer is not paused. The others (TLS, HTTP/2,
    HTTP/1.0, anything queued, a paused producer) are written one by one,
    as by L{sse_twisted.hub.SinkSet}. A send that the kernel takes in part
    queues the rest through Twisted, and the stream stays out of the loop
    until its queue has drained.
    """

    __slots__ = ("_direct", "_lease", "_others")

    log = Logger()

    def __init__(self, lease: type[Lease], direct: type[DirectSet]) -> None:
        """
        @param lease: The lease type of the compiled module.
        @param direct: Its set type.
        """
        self._lease = lease
        self._direct = direct()
        self._others: set[EventSink] = set()

    def add(self, sink: EventSink) -> None:
        lease = sink.lease(self._lease) if isinstance(sink, EventStream) else None
        if lease is None:
            self._others.add(sink)
        else:
            self._direct.add(lease, sink)

    def discard(self, sink: EventSink) -> None:
        if not self._direct.discard(sink):
            self._others.discard(sink)

    def __len__(self) -> int:
        return len(self._direct) + len(self._others)

    def write(self, data: bytes, conflate: Hashable | None = None) -> list[EventSink]:
        others = tuple(self._others)
        chunk = _chunk(data)
        partial, held = self._direct.send(chunk)
        failed: list[EventSink] = []
        for stream, sent in partial:
            assert isinstance(stream, EventStream)
            try:
                stream._queue(chunk[sent:])
            except Exception:
                self.log.failure("dropping a stream that failed a write")
                failed.append(stream)
        failed += write_each(held, data, conflate)  # type: ignore[arg-type]
        failed += write_each(others, data, conflate)
        return failed
