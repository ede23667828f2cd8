"""
How a request for a stream asks it to start: resuming after
C{Last-Event-ID} (or C{?lastEventId=}), rewinding (C{?rewind=}) or with a
snapshot of the retained values (C{?snapshot=1}).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twisted.web.iweb import IRequest

from sse_twisted.log import Rewind
from sse_twisted.web import RequestError, header_text

MAX_REWIND_EVENTS = 100
"""The most events C{?rewind=N} asks for."""

MAX_REWIND_SECONDS = 3600
"""The longest span C{?rewind=<n>s} or C{<n>m} asks for, in seconds."""

_MAX_LAST_EVENT_ID = 256
_REWIND = re.compile(r"([1-9][0-9]{0,5})([sm]?)")
_REWIND_ERROR = (
    f"rewind must be given once: a number of events from 1 to"
    f" {MAX_REWIND_EVENTS}, or a span such as 30s or 5m (at most"
    f" {MAX_REWIND_SECONDS}s or {MAX_REWIND_SECONDS // 60}m)"
)


@dataclass(frozen=True)
class Start:
    """
    How a stream starts.

    @ivar last_event_id: The id the client resumes after, if any.
    @ivar rewind: How far back a first connect starts, if asked.
    @ivar snapshot: Whether the stream starts with a snapshot.
    """

    last_event_id: str | None = None
    rewind: Rewind | None = None
    snapshot: bool = False


FROM_NOW = Start()
"""The start of a stream that asks for nothing: live events from now on."""


def stream_start(request: IRequest) -> Start:
    """
    Read how the stream of C{request} starts. A rewind is ignored (but
    checked) when the client resumes.

    @raise RequestError: 400, if C{rewind} or C{snapshot} is malformed,
        given twice, or both are given.
    """
    # find, not "in": a bytes "in" tries the operand as an int first, and
    # raises and drops a TypeError for every stream.
    if not request.args and request.uri.find(b"?") < 0:
        last_event_id = _last_event_id(request)
        return FROM_NOW if last_event_id is None else Start(last_event_id)
    rewinds = request.args.get(b"rewind")
    snapshots = request.args.get(b"snapshot")
    bare = _bare_names(request)
    if b"rewind" in bare:
        rewinds = [b"", *(rewinds or ())]
    if b"snapshot" in bare:
        snapshots = [b"", *(snapshots or ())]
    rewind = None if rewinds is None else parse_rewind(rewinds)
    if snapshots is not None and snapshots != [b"1"]:
        raise RequestError(400, "snapshot must be given once, as snapshot=1")
    if rewind is not None and snapshots is not None:
        raise RequestError(400, "rewind and snapshot cannot be used together")
    last_event_id = _last_event_id(request)
    return Start(
        last_event_id, None if last_event_id else rewind, snapshots is not None
    )


def parse_rewind(values: list[bytes]) -> Rewind:
    """
    @param values: The C{rewind} query arguments.
    @return: The rewind they ask for.
    @raise RequestError: 400, unless there is exactly one, and it is a
        number of events from 1 to L{MAX_REWIND_EVENTS} or a span from
        C{1s} to L{MAX_REWIND_SECONDS} seconds (C{<n>s} or C{<n>m}), written
        in decimal digits without sign or leading zeros.
    """
    match = _REWIND.fullmatch(values[0].decode("ascii", "replace"))
    if len(values) != 1 or match is None:
        raise RequestError(400, _REWIND_ERROR)
    number, unit = int(match[1]), match[2]
    if not unit:
        if number > MAX_REWIND_EVENTS:
            raise RequestError(400, _REWIND_ERROR)
        return Rewind(count=number)
    seconds = number * 60 if unit == "m" else number
    if seconds > MAX_REWIND_SECONDS:
        raise RequestError(400, _REWIND_ERROR)
    return Rewind(seconds=seconds)


def _bare_names(request: IRequest) -> set[bytes]:
    """
    @return: The query's arguments given without C{=} (which the request's
        C{args} leave out), such as C{?snapshot}.
    """
    query = request.uri.partition(b"?")[2]
    if not query:
        return set()
    return {item for item in query.replace(b";", b"&").split(b"&") if b"=" not in item}


def _last_event_id(request: IRequest) -> str | None:
    found = header_text(request, b"Last-Event-ID")
    if found is None:
        values = request.args.get(b"lastEventId")
        found = values[-1].decode("utf-8", "replace") if values else None
    return None if found is None else found[:_MAX_LAST_EVENT_ID]
