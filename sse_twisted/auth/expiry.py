"""
Streams that end when their token does, with a warning first, so that the
page can get a fresh token before its C{EventSource} reconnects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from sse_twisted.auth.gate import Grant
from sse_twisted.event import encode_event
from sse_twisted.hub import EventSink

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


def warning(expires: float) -> bytes:
    """
    @return: The L{TOKEN_EXPIRING} event for a token that expires at
        C{expires}.
    """
    return encode_event(json.dumps({"exp": expires}), event=TOKEN_EXPIRING)


# A batch's key: when it warns (None once that was done when its streams
# opened) and when it ends them.
_Key = tuple[float | None, float]


@dataclass(eq=False)
class _Batch:
    key: _Key
    call: IDelayedCall
    sinks: set[EventSink] = field(default_factory=set)


class Expiries:
    """
    The streams whose tokens expire: each is warned, then ended, on the
    reactor's clock.

    Streams due at the same moments (those opened with the same token, say)
    share one batch and its one timer, which warns them, then ends them:
    a stream costs no timer, nor anything else, of its own.
    """

    def __init__(self, clock: IReactorTime) -> None:
        """
        @param clock: The reactor's clock.
        """
        self._clock = clock
        self._batches: dict[_Key, _Batch] = {}
        self._due: dict[EventSink, _Batch] = {}

    def __len__(self) -> int:
        """
        @return: How many streams are waiting for their end.
        """
        return len(self._due)

    def add(self, sink: EventSink, grant: Grant) -> None:
        """
        Warn C{sink} with a L{TOKEN_EXPIRING} event before C{grant} expires
        (at once if that moment has passed), and end it when it does.
        Nothing happens for a grant without an end.

        @param sink: A stream that has just opened.
        @param grant: The leave it was opened with.
        """
        expires = grant.expires
        if expires is None:
            return
        now = self._clock.seconds()
        warn_at: float | None = warning_time(expires, grant.issued, now)
        if warn_at is not None and warn_at <= now:
            sink.write(warning(expires))
            warn_at = None
        key = (warn_at, expires)
        batch = self._batches.get(key)
        if batch is None:
            first = expires if warn_at is None else warn_at
            call = self._clock.callLater(max(0.0, first - now), self._fire, key)
            batch = self._batches[key] = _Batch(key, call)
        batch.sinks.add(sink)
        self._due[sink] = batch

    def discard(self, sink: EventSink) -> None:
        """
        Forget C{sink}, which has ended. Unknown sinks are ignored.
        """
        batch = self._due.pop(sink, None)
        if batch is None:
            return
        batch.sinks.discard(sink)
        if not batch.sinks:
            del self._batches[batch.key]
            batch.call.cancel()

    def _fire(self, key: _Key) -> None:
        batch = self._batches.pop(key)
        warn_at, expires = key
        if warn_at is None:
            for sink in batch.sinks:
                del self._due[sink]
            for sink in batch.sinks:
                sink.close()
            return
        # Warned, the streams wait for their end with those warned already.
        warned = tuple(batch.sinks)
        ending = self._batches.get((None, expires))
        if ending is None:
            batch.key = (None, expires)
            batch.call = self._clock.callLater(
                max(0.0, expires - self._clock.seconds()), self._fire, batch.key
            )
            self._batches[batch.key] = batch
        else:
            ending.sinks.update(warned)
            for sink in warned:
                self._due[sink] = ending
        data = warning(expires)
        for sink in warned:
            sink.write(data)
