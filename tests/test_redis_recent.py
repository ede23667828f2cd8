"""
Tests for L{sse_twisted.redis.recent}: the newest entries, for resumes.
"""

from __future__ import annotations

from sse_twisted.log import Record
from sse_twisted.redis.recent import RecentEntries


def record(n: int, topic: str = "t") -> Record:
    return Record(f"{n}-0", topic, f"id: {n}-0\n\n".encode(), None)


def after(recent: RecentEntries, n: int) -> list[str] | None:
    newer = recent.after((n, 0))
    return None if newer is None else [r.id for r in newer]


def test_records_after_an_entry_kept() -> None:
    """
    After an entry it keeps, the newer records come in order; entries that
    cannot be sent are skipped; an entry it does not keep gives C{None}.
    """
    recent = RecentEntries(size=10)
    recent.extend([((1, 0), record(1)), ((2, 0), None), ((3, 0), record(3))])
    assert after(recent, 1) == ["3-0"]
    assert after(recent, 3) == []
    assert after(recent, 0) is None


def test_only_the_newest_size_entries_count() -> None:
    """
    However many are read, only the newest C{size} entries are resumed
    from, and memory stays bounded.
    """
    recent = RecentEntries(size=3)
    for n in range(1, 101):
        recent.add((n, 0), record(n))
    assert after(recent, 97) is None
    assert after(recent, 98) == ["99-0", "100-0"]
    assert len(recent) < 2 * 3


def test_clear_forgets_every_entry() -> None:
    recent = RecentEntries(size=3)
    recent.add((1, 0), record(1))
    recent.clear()
    assert after(recent, 1) is None
    recent.add((2, 0), record(2))
    assert after(recent, 2) == []
