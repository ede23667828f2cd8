"""
One open C{text/event-stream} HTTP response, as an L{sse_twisted.hub.EventSink}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest


class EventStream:
    """
    An HTTP response kept open to carry events.

    A Klein route returns L{done}, which fires only when the server ends the
    stream with L{close}; when the client goes away first, Klein cancels it.
    """

    def __init__(self, request: IRequest) -> None:
        """
        @param request: The request whose response carries the events; its
            headers must be set already.
        """
        self._request = request
        self.done: Deferred[None] = Deferred()

    def write(self, data: bytes) -> None:
        """
        Queue C{data} for the client. After a disconnect, Twisted drops it.

        @param data: Encoded events or comments.
        """
        self._request.write(data)

    def close(self, farewell: bytes = b"") -> None:
        """
        Write C{farewell} and finish the response. Does nothing if the
        response is over already.

        @param farewell: Bytes to write first, such as a C{retry:} field.
        """
        if self.done.called:
            return
        if farewell:
            self.write(farewell)
        self.done.callback(None)
