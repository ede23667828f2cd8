"""
Test helpers for applications built on ssedemo's hub: the WHATWG parser of
the event-stream format (the client's own, L{sse_twisted.client.parser}) and
a sink that records what the hub writes.
"""

from __future__ import annotations

from sse_twisted.client.parser import EventStreamParser, ParsedEvent, parse

__all__ = ["EventStreamParser", "ParsedEvent", "RecordingSink", "parse"]


class RecordingSink:
    """
    An L{sse_twisted.hub.EventSink} that keeps what it is given.

    @ivar writes: Every C{bytes} written, in order.
    @ivar closed_with: The farewell it was closed with, or C{None}.
    """

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed_with: bytes | None = None

    def write(self, data: bytes, conflate: object = None) -> None:
        self.writes.append(data)

    def close(self, farewell: bytes = b"") -> None:
        self.closed_with = farewell

    def parsed(self) -> EventStreamParser:
        """
        @return: A parser that has read everything written so far.
        """
        return parse(b"".join(self.writes))

    def data(self) -> list[str]:
        """
        @return: The data of every event written so far.
        """
        return [event.data for event in self.parsed().events]
