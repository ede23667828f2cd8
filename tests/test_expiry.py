"""
Tests for L{sse_twisted.auth.expiry}: warnings and ends on the reactor's clock,
one timer for the streams due at the same moment.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock

from sse_twisted.auth.expiry import TOKEN_EXPIRING, Expiries
from sse_twisted.auth.gate import Grant
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


def test_streams_due_together_share_a_timer() -> None:
    """
    Streams with the same warning and end share one timer, which warns
    them, then ends them.
    """
    clock = Clock()
    expiries = Expiries(clock)
    sinks = [Sink(expiries) for _ in range(3)]
    for sink in sinks:
        expiries.add(sink, Grant(expires=100, issued=0))
    assert len(clock.getDelayedCalls()) == 1
    expiries.discard(sinks[0])
    clock.advance(70)
    assert [warnings(s) for s in sinks] == [[], [{"exp": 100}], [{"exp": 100}]]
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(29)
    assert [s.closed_with is not None for s in sinks] == [False, False, False]
    clock.advance(1)
    assert [s.closed_with is not None for s in sinks] == [False, True, True]
    assert len(expiries) == 0 and clock.getDelayedCalls() == []


def test_last_stream_gone_cancels_the_timers() -> None:
    clock = Clock()
    expiries = Expiries(clock)
    first, second = Sink(expiries), Sink(expiries)
    expiries.add(first, Grant(expires=100))
    expiries.add(second, Grant(expires=200))
    assert len(clock.getDelayedCalls()) == 2
    expiries.discard(first)
    expiries.discard(first)
    assert len(clock.getDelayedCalls()) == 1
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


def test_warned_streams_join_those_warned_as_they_opened() -> None:
    """
    Streams warned by their timer end together with those of the same token
    that opened after the warning's moment (and were warned at once), even
    when that timer runs late: each is warned once and ended on time.
    """
    clock = Clock()
    expiries = Expiries(clock)
    early, late, later = Sink(expiries), Sink(expiries), Sink(expiries)
    expiries.add(early, Grant(expires=100, issued=0))
    clock.rightNow = 80.0  # the warning's timer is late
    expiries.add(late, Grant(expires=100, issued=0))
    assert (warnings(early), warnings(late)) == ([], [{"exp": 100}])
    clock.advance(0)
    expiries.add(later, Grant(expires=100, issued=0))
    assert warnings(early) == warnings(late) == warnings(later) == [{"exp": 100}]
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(20)
    assert early.closed_with == late.closed_with == later.closed_with == b""
    assert warnings(early) == warnings(late) == [{"exp": 100}]
    assert len(expiries) == 0 and clock.getDelayedCalls() == []


def test_warned_batch_waits_alone_for_its_end() -> None:
    """
    A batch warned on time with no stream warned at opening keeps its
    streams, and a stream that leaves after the warning is not ended.
    """
    clock = Clock()
    expiries = Expiries(clock)
    stays, leaves = Sink(expiries), Sink(expiries)
    expiries.add(stays, Grant(expires=100, issued=0))
    expiries.add(leaves, Grant(expires=100, issued=0))
    clock.advance(70)
    expiries.discard(leaves)
    assert len(expiries) == 1
    clock.advance(30)
    assert stays.closed_with == b"" and leaves.closed_with is None
    assert clock.getDelayedCalls() == []


def test_grant_without_end_is_not_timed() -> None:
    clock = Clock()
    expiries = Expiries(clock)
    expiries.add(Sink(expiries), Grant())
    assert clock.getDelayedCalls() == [] and len(expiries) == 0
