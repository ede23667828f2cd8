"""
Tests for L{sse_twisted.expiry}: warnings and ends on the reactor's clock,
one timer for the streams due at the same moment.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock

from sse_twisted.auth import Grant
from sse_twisted.expiry import TOKEN_EXPIRING, Expiries
from sse_twisted.testing import RecordingSink


class Sink(RecordingSink):
    """
    A recording sink that, like a stream, reports its end.
    """

    def __init__(self, expiries: Expiries) -> None:
        super().__init__()
        self.expiries = expiries

    def close(self, farewell: bytes = b"") -> None:
        super().close(farewell)
        self.expiries.discard(self)


def warnings(sink: RecordingSink) -> list[object]:
    return [
        json.loads(e.data) for e in sink.parsed().events if e.type == TOKEN_EXPIRING
    ]


def test_streams_due_together_share_timers() -> None:
    clock = Clock()
    expiries = Expiries(clock)
    sinks = [Sink(expiries) for _ in range(3)]
    for sink in sinks:
        expiries.add(sink, Grant(expires=100, issued=0))
    assert len(clock.getDelayedCalls()) == 2
    expiries.discard(sinks[0])
    clock.advance(70)
    assert [warnings(s) for s in sinks] == [[], [{"exp": 100}], [{"exp": 100}]]
    clock.advance(30)
    assert [s.closed_with is not None for s in sinks] == [False, True, True]
    assert len(expiries) == 0 and clock.getDelayedCalls() == []


def test_last_stream_gone_cancels_the_timers() -> None:
    clock = Clock()
    expiries = Expiries(clock)
    first, second = Sink(expiries), Sink(expiries)
    expiries.add(first, Grant(expires=100))
    expiries.add(second, Grant(expires=200))
    assert len(clock.getDelayedCalls()) == 4
    expiries.discard(first)
    expiries.discard(first)
    assert len(clock.getDelayedCalls()) == 2
    expiries.discard(second)
    assert clock.getDelayedCalls() == [] and len(expiries) == 0


def test_overdue_warning_is_sent_at_once() -> None:
    """
    A stream opened less than the warning's lead before its token expires
    is warned as it opens, and ended on time.
    """
    clock = Clock()
    clock.advance(90)
    expiries = Expiries(clock)
    sink = Sink(expiries)
    expiries.add(sink, Grant(expires=100, issued=0))
    assert warnings(sink) == [{"exp": 100}]
    clock.advance(10)
    assert sink.closed_with == b""


def test_grant_without_end_is_not_timed() -> None:
    clock = Clock()
    expiries = Expiries(clock)
    expiries.add(Sink(expiries), Grant())
    assert clock.getDelayedCalls() == [] and len(expiries) == 0
