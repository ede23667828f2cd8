"""
One open C{text/event-stream} HTTP response, as an L{sse_twisted.hub.EventSink}.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from twisted.internet.interfaces import ITransport
from twisted.web.http import HTTPChannel
from twisted.web.server import Request


@lru_cache(maxsize=8)
def _chunk(data: bytes) -> bytes:
    """
    Frame C{data} as one HTTP/1.1 chunk. Cached, so that an event written to
    thousands of streams is framed once.
    """
    return b"%x\r\n%s\r\n" % (len(data), data)


class EventStream:
    """
    An HTTP response kept open to carry events, until the server ends it with
    L{close} or the client goes away.

    Once the headers are out, events on HTTP/1.x go straight to the
    connection, framed once per event, rather than through
    L{Request.write}, which would frame each copy again.
    """

    __slots__ = ("_chunked", "_ended", "_open", "_request", "_transport")

    def __init__(
        self, request: Request, ended: Callable[[EventStream], object]
    ) -> None:
        """
        @param request: The request whose response carries the events; its
            headers must be set already.
        @param ended: Called with this stream once the response is over,
            whoever ended it.
        """
        self._request = request
        self._transport: ITransport | None = None
        self._chunked = False
        self._open = True
        self._ended = ended
        request.notifyFinish().addBoth(self._end)

    def _end(self, reason: object) -> None:
        self._open = False
        self._ended(self)

    def start(self, opening: bytes) -> None:
        """
        Send the headers and the first bytes.

        @param opening: Such as a C{retry:} field and a greeting.
        """
        self._request.write(opening)
        channel = self._request.channel
        if isinstance(channel, HTTPChannel):
            self._transport = channel.transport
            self._chunked = bool(self._request.chunked)

    def write(self, data: bytes) -> None:
        """
        Queue C{data} for the client. After a disconnect, it is dropped.

        @param data: Encoded events or comments.
        """
        transport = self._transport
        if transport is None:
            self._request.write(data)
        elif self._chunked:
            transport.write(_chunk(data))
        else:
            transport.write(data)

    def close(self, farewell: bytes = b"") -> None:
        """
        Write C{farewell} and finish the response. Does nothing if the
        response is over already.

        @param farewell: Bytes to write first, such as a C{retry:} field.
        """
        if not self._open:
            return
        if farewell:
            self.write(farewell)
        self._request.finish()
