"""
An event-stream parser written from the WHATWG "Server-sent events"
interpretation rules, independent of the server's encoder, used to check
what a real client would see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class ParsedEvent:
    type: str
    data: str
    last_event_id: str


@dataclass
class EventStreamParser:
    """
    Feed it bytes as they arrive; it collects the events a browser's
    C{EventSource} would dispatch, the comments, and the retry value.
    """

    events: list[ParsedEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    last_event_id: str = ""
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _type: str = ""
    _pending: bytes = b""

    def feed(self, chunk: bytes) -> list[ParsedEvent]:
        before = len(self.events)
        text = self._decode(chunk)
        self._buffer += text
        while True:
            line, ending = _split_line(self._buffer)
            if ending is None:
                break
            self._buffer = self._buffer[len(line) + len(ending) :]
            self._line(line)
        return self.events[before:]

    def _decode(self, chunk: bytes) -> str:
        data = self._pending + chunk
        for cut in range(len(data), max(len(data) - 4, -1), -1):
            try:
                text = data[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self._pending = data[cut:]
            return text
        raise ValueError("not UTF-8")

    def _line(self, line: str) -> None:
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            self.comments.append(line[1:])
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
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


_LINE_END = re.compile(r"\r\n|\r|\n")


def _split_line(buffer: str) -> tuple[str, str | None]:
    found = _LINE_END.search(buffer)
    if found is None or (found.group() == "\r" and found.end() == len(buffer)):
        return buffer, None  # no line yet, or a CR that may start a CRLF
    return buffer[: found.start()], found.group()


def parse(stream: bytes) -> EventStreamParser:
    parser = EventStreamParser()
    parser.feed(stream)
    return parser
