"""
Test helpers for applications built on ssedemo's hub: a client-side parser
of the event-stream format and a sink that records what the hub writes.

The parser follows the WHATWG "Server-sent events" interpretation rules and
shares no code with L{sse_twisted.event}, so tests that check the encoder
with it check it against the spec, not against itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class ParsedEvent:
    """
    One event as C{EventSource} dispatches it.

    @ivar type: The event type (C{"message"} unless named).
    @ivar data: The data, its lines joined by LF.
    @ivar last_event_id: The client's last event id once this event arrived.
    """

    type: str
    data: str
    last_event_id: str


@dataclass
class EventStreamParser:
    """
    Feed it a stream's bytes as they arrive, split anywhere; it collects the
    events a browser would dispatch, the comments, and the retry delay.
    """

    events: list[ParsedEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    last_event_id: str = ""
    _buffer: str = ""
    _pending: bytes = b""
    _data: list[str] = field(default_factory=list)
    _type: str = ""

    def feed(self, chunk: bytes) -> list[ParsedEvent]:
        """
        @param chunk: The next bytes of the stream.
        @return: The events that these bytes completed.
        """
        before = len(self.events)
        self._buffer += self._decode(chunk)
        while True:
            found = _LINE_END.search(self._buffer)
            if found is None or (
                found.group() == "\r" and found.end() == len(self._buffer)
            ):
                break  # no whole line yet, or a CR that may start a CRLF
            line = self._buffer[: found.start()]
            self._buffer = self._buffer[found.end() :]
            self._line(line)
        return self.events[before:]

    def _decode(self, chunk: bytes) -> str:
        data = self._pending + chunk
        # Keep the bytes of a UTF-8 sequence cut at the end for the next feed.
        for cut in range(len(data), max(len(data) - 4, -1), -1):
            try:
                text = data[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self._pending = data[cut:]
            return text
        raise ValueError("the stream is not UTF-8")

    def _line(self, line: str) -> None:
        if line == "":
            self._dispatch()
        elif line.startswith(":"):
            self.comments.append(line[1:])
        else:
            name, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            self._field(name, value)

    def _field(self, name: str, value: str) -> None:
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self) -> None:
        if self._data:
            self.events.append(
                ParsedEvent(
                    self._type or "message", "\n".join(self._data), self.last_event_id
                )
            )
        self._data = []
        self._type = ""


def parse(stream: bytes) -> EventStreamParser:
    """
    @param stream: Bytes of an event stream.
    @return: A parser that has read all of them.
    """
    parser = EventStreamParser()
    parser.feed(stream)
    return parser


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
