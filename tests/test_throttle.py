"""
Tests for L{sse_twisted.ops.throttle}: many occurrences, few log lines.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from sse_twisted.ops.throttle import LogSummary


def summary(**kwargs: float) -> tuple[LogSummary, list[int], Clock]:
    clock, lines = Clock(), []
    return LogSummary(clock, lines.append, **kwargs), lines, clock


def test_first_occurrence_is_logged_on_the_next_turn() -> None:
    """
    By default the first occurrence after a quiet spell is logged on the
    next turn of the event loop, with what came in the same turn.
    """
    log, lines, clock = summary()
    log.add()
    log.add(2)
    assert lines == []
    clock.advance(0)
    assert lines == [3]


def test_at_most_one_line_per_interval() -> None:
    """
    Occurrences within a second of the last line wait until that second
    has passed, and make one line together.
    """
    log, lines, clock = summary(interval=1.0)
    log.add()
    clock.advance(0)
    clock.advance(0.4)
    log.add()
    clock.advance(0.5)
    log.add()
    assert lines == [1]
    clock.advance(0.1)
    assert lines == [1, 2]
    clock.advance(10)
    assert lines == [1, 2]


def test_first_after_gathers_a_burst() -> None:
    """
    With C{first_after}, a burst is summed up in one line that long after
    its first occurrence.
    """
    log, lines, clock = summary(interval=1.0, first_after=1.0)
    for _ in range(5):
        log.add()
    clock.advance(0.99)
    assert lines == []
    clock.advance(0.01)
    assert lines == [5]


def test_flush_logs_at_once_and_only_what_is_pending() -> None:
    """
    C{flush} logs what is counted without waiting (as when stopping), and
    nothing when nothing happened; a count of zero still asks for a line.
    """
    log, lines, clock = summary()
    log.flush()
    assert lines == []
    log.add(0)
    log.flush()
    assert lines == [0]
    clock.advance(5)
    assert lines == [0]
