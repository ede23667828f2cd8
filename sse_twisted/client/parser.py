"""
The event-stream format read as a browser's C{EventSource} reads it: the
WHATWG "Server-sent events" interpretation rules, fed bytes split anywhere.

It shares no code with L{sse_twisted.event}, so tests that check the
server's encoder with it check it against the spec, not against itself; and
it is the parser of L{sse_twisted.client.eventsource.EventSource}.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

_LINE_END = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


def _utf8_decoder() -> codecs.IncrementalDecoder:
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


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
    Feed it a stream's bytes as they arrive, split anywhere (between CR and
    LF, inside a UTF-8 sequence); it returns the events a browser would
    dispatch, and keeps the retry delay and the last event id. A line
    that ends with CR is taken at once (an event is not held back until
    the next byte shows whether an LF follows).

    As the specification says, one leading byte order mark is dropped,
    bytes that are not UTF-8 become U+FFFD, an C{id} containing NUL is
    ignored, and the last event id changes only when an event is
    dispatched (a blank line), so that an event cut short changes nothing.

    @ivar events: Every event dispatched so far, if C{record} is set.
    @ivar comments: Every comment line (without its colon), if C{record}
        is set.
    @ivar retry: The last valid C{retry:} value, in milliseconds, or
        C{None}.
    @ivar last_event_id: The last event id: give the one a client already
        has when it reconnects.
    @ivar record: Whether to keep the events and comments in C{events} and
        C{comments}; a long-lived client turns it off.
    """

    events: list[ParsedEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    last_event_id: str = ""
    record: bool = True
    _buffer: str = ""
    _started: bool = False
    _after_cr: bool = False
    _decoder: codecs.IncrementalDecoder = field(default_factory=_utf8_decoder)
    _data: list[str] = field(default_factory=list)
    _type: str = ""
    _id: str | None = None

    def feed(self, chunk: bytes) -> list[ParsedEvent]:
        """
        @param chunk: The next bytes of the stream.
        @return: The events that these bytes completed.
        """
        text = self._decoder.decode(chunk)
        if text and not self._started:
            self._started = True
            text = text.removeprefix(_BOM)
        if text and self._after_cr:
            # The line ended at the CR already; an LF after it is its CRLF.
            self._after_cr = False
            text = text.removeprefix("\n")
        buffer = self._buffer + text
        completed: list[ParsedEvent] = []
        start = 0
        while (found := _LINE_END.search(buffer, start)) is not None:
            self._line(buffer[start : found.start()], completed)
            start = found.end()
            self._after_cr = found.group() == "\r" and start == len(buffer)
        self._buffer = buffer[start:]
        if self.record:
            self.events.extend(completed)
        return completed

    def _line(self, line: str, completed: list[ParsedEvent]) -> None:
        if line == "":
            self._dispatch(completed)
        elif line.startswith(":"):
            if self.record:
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
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self, completed: list[ParsedEvent]) -> None:
        if self._id is not None:
            self.last_event_id = self._id
            self._id = None
        if self._data:
            completed.append(
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
