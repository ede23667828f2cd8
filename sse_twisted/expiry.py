"""
Streams that end when their token does, with a warning first, so that the
page can get a fresh token before its C{EventSource} reconnects.
"""

from __future__ import annotations

import json

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from sse_twisted.auth import Grant
from sse_twisted.event import encode_event
from sse_twisted.stream import EventStream

TOKEN_EXPIRING = "token-expiring"
"""The event that warns a stream of its token's end; its data is
C{{"exp": <seconds since the epoch>}}."""

WARNING_LEAD = 30.0
"""Seconds between the warning and the end, unless half the token's
lifetime is shorter."""


def warning_time(expires: float, issued: float | None, opened: float) -> float:
    """
    @param expires: When the token expires.
    @param issued: When it was issued, if known.
    @param opened: When the stream opened.
    @return: When to warn: L{WARNING_LEAD} before C{expires}, or half the
        token's lifetime (from C{issued}, else from C{opened}) before it if
        that is shorter.
    """
    lifetime = expires - (issued if issued is not None else opened)
    return expires - max(0.0, min(WARNING_LEAD, lifetime / 2))


def end_with_token(
    stream: EventStream, request: Request, grant: Grant, clock: IReactorTime
) -> None:
    """
    Warn C{stream} with a L{TOKEN_EXPIRING} event before C{grant} expires,
    and end it when it does. Nothing happens for a grant without an end.

    @param stream: An open stream.
    @param request: Its request.
    @param grant: The leave it was opened with.
    @param clock: The reactor's clock.
    """
    expires = grant.expires
    if expires is None:
        return
    now = clock.seconds()
    warning = encode_event(json.dumps({"exp": expires}), event=TOKEN_EXPIRING)
    calls = [
        clock.callLater(
            max(0.0, warning_time(expires, grant.issued, now) - now),
            stream.write,
            warning,
        ),
        clock.callLater(max(0.0, expires - now), stream.close),
    ]

    def cancel(_: object) -> None:
        for call in calls:
            if call.active():
                call.cancel()

    request.notifyFinish().addBoth(cancel)
