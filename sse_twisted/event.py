"""
Encoding of Server-Sent Events into the C{text/event-stream} wire format.

The rules follow the WHATWG HTML standard, section "Server-sent events":
every line of the data becomes its own C{data:} field, whatever line break
(C{CRLF}, C{CR} or C{LF}) separated it, and a blank line ends the event.
Fields that cannot be split (C{event}, C{id}) are refused when they hold a
line break or a NUL, because emitting them would corrupt the stream for
every later event.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_FIELD = re.compile(r"[\r\n\x00]")


class InvalidEventField(ValueError):
    """
    An event field holds a character that would corrupt the stream.
    """


def _checked(name: str, value: str) -> str:
    if _FORBIDDEN_IN_FIELD.search(value):
        raise InvalidEventField(f"{name} must not contain a line break or NUL")
    return value


def encode_event(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """
    Encode one event for the wire.

    @param data: The payload; it may span several lines.
    @param event: The event type, dispatched by C{EventSource} to listeners
        of that name; C{None} for the default C{message} type.
    @param id: The event id, which becomes the client's C{Last-Event-ID};
        C{None} leaves the client's last id unchanged, C{""} clears it.
    @param retry: The reconnection delay, in milliseconds, for the client.

    @return: The UTF-8 bytes of the event, ending with a blank line.

    @raise InvalidEventField: If C{event} or C{id} holds a line break or a
        NUL, C{retry} is negative, or a field is not valid Unicode (a
        lone surrogate).
    """
    lines = []
    if event is not None:
        lines.append(f"event: {_checked('event', event)}")
    if id is not None:
        lines.append(f"id: {_checked('id', id)}")
    if retry is not None:
        if retry < 0:
            raise InvalidEventField("retry must not be negative")
        lines.append(f"retry: {retry}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    try:
        return ("\n".join(lines) + "\n\n").encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidEventField("event fields must be valid Unicode text") from e


def encode_retry(milliseconds: int) -> bytes:
    """
    Encode a lone C{retry:} field, which sets the client's reconnection
    delay without dispatching an event.

    @param milliseconds: The delay; not negative.
    @return: The wire bytes.
    """
    if milliseconds < 0:
        raise InvalidEventField("retry must not be negative")
    return b"retry: %d\n\n" % (milliseconds,)


def encode_jittered_retry(
    milliseconds: int, jitter: Callable[[], float] = random.random
) -> bytes:
    """
    Encode a C{retry:} field between one and two times C{milliseconds},
    chosen at random, so that clients told to come back later do not all
    come back at once.

    @param milliseconds: The usual delay; not negative.
    @param jitter: Returns a fraction in [0, 1) of extra delay.
    @return: The wire bytes.
    """
    return encode_retry(int(milliseconds * (1 + jitter())))


def encode_comment(text: str = "") -> bytes:
    """
    Encode a comment, which clients ignore; used to keep idle streams open.

    @param text: The comment; line breaks split it into several comments.
    @return: The wire bytes.
    """
    return ("".join(f":{line}\n" for line in _LINE_BREAK.split(text)) + "\n").encode(
        "utf-8"
    )
