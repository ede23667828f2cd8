"""
The newest entries the reader has read, kept so that a client resuming
after one of them is replayed from memory, without a round trip to Redis:
after a restart every client comes back at once, nearly all with a recent
id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sse_twisted.log import Record

EntryId = tuple[int, int]
"""A stream entry id, C{<milliseconds>-<sequence>}, as numbers that compare."""

RECENT = 1000
"""How many of the newest entries are kept."""


class RecentEntries:
    """
    A run of consecutive entries of the stream, in order, ending with the
    newest the reader has read: whoever adds to it must add every entry it
    reads, and L{clear} it when it may have missed one. Only the newest
    C{size} count: a resume after an older entry is the stream's to answer
    (the stream keeps C{--history} entries, and so should this).
    """

    def __init__(self, size: int = RECENT) -> None:
        """
        @param size: How many entries are kept, at least.
        """
        self._size = size
        self._entries: list[tuple[EntryId, Record | None]] = []
        self._index: dict[EntryId, int] = {}
        self._base = 0
        """The number, counted since the start, of C{_entries[0]}."""

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: EntryId, record: Record | None) -> None:
        """
        Keep the entry C{key}, the newest read (C{record} is C{None} for an
        entry that cannot be sent).
        """
        self._index[key] = self._base + len(self._entries)
        self._entries.append((key, record))
        if len(self._entries) >= 2 * self._size:
            dropped = len(self._entries) - self._size
            for old, _ in self._entries[:dropped]:
                del self._index[old]
            del self._entries[:dropped]
            self._base += dropped

    def extend(self, entries: Iterable[tuple[EntryId, Record | None]]) -> None:
        """
        Keep C{entries}, oldest first, as L{add} does each.
        """
        for key, record in entries:
            self.add(key, record)

    def clear(self) -> None:
        """
        Forget every entry: the next ones read may not follow them.
        """
        self._entries.clear()
        self._index.clear()

    def after(self, key: EntryId) -> Iterator[Record] | None:
        """
        @return: The records after the entry C{key}, in order (those that
            can be sent), if C{key} is one of the entries kept; else C{None}.
        """
        number = self._index.get(key)
        if number is None:
            return None
        place = number - self._base
        if place < len(self._entries) - self._size:
            return None  # kept a while longer, but not among the newest
        newer = self._entries[place + 1 :]
        return (record for _, record in newer if record is not None)
