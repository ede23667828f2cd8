"""
The event log: ids, the history of recent events, and replay after an id.

The log decides what the events are and in which order; the
L{sse_twisted.hub.Hub} only fans them out to the streams of this process.
L{MemoryLog} is the embedded log of a single process; a shared log
(L{sse_twisted.redis.log.RedisLog}) answers asynchronously, and feeds the
hub every event itself, its own ones included, in the log's order.

Besides the history, a log keeps the retained values of keyed events
(L{sse_twisted.retained}) for snapshots, and tells where a rewind starts.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from sse_twisted.event import encode_event
from sse_twisted.retained import DEFAULT_MAX_KEYS, RetainedValues


class Record(NamedTuple):
    """
    One published event, as it goes to every stream of its topic.

    @ivar id: The event's id.
    @ivar topic: The topic it was published to.
    @ivar wire: The event, encoded with its id, ready to write.
    @ivar key: Its key, if it was published with one.
    """

    id: str
    topic: str
    wire: bytes
    key: str | None = None


@dataclass(frozen=True)
class Rewind:
    """
    Where a stream that asks for context on its first connect starts: its
    topics' last C{count} events, or those stored in the last C{seconds}.
    Exactly one of the two is given.
    """

    count: int | None = None
    seconds: int | None = None


class Snapshot(NamedTuple):
    """
    The retained values of some topics, and the log position they were
    read at.

    @ivar values: The retained events, in id order.
    @ivar position: The newest event id in the whole log when they were
        read, or C{""} if the log was empty.
    """

    values: list[Record]
    position: str


class LogUnavailable(Exception):
    """
    The log could not be read in time: a stream that needs it (to resume,
    or, before the log was ever read, to start) is told to come back later,
    never answered from a log that was not read.
    """


class EventLog(Protocol):
    """
    Where published events get their ids and are kept for resuming clients.
    """

    @property
    def last_id(self) -> str | None:
        """
        The id of the newest event, or C{None} if there is none yet.
        """

    def append(
        self, data: str, event: str | None, topic: str, key: str | None = None
    ) -> Record | Deferred[str]:
        """
        Give an event the next id and keep it; with a C{key}, keep it as
        the retained value of (C{topic}, C{key}) too, or delete that value
        if C{data} is L{sse_twisted.retained.DELETION}.

        @param data: The payload.
        @param event: The event type, or C{None} for C{message}.
        @param topic: The topic.
        @param key: The event's key, checked by
            L{sse_twisted.retained.is_key}, or C{None}.
        @return: The event as it goes out, for the caller to deliver; or,
            from a shared log that delivers its events itself, a
            L{Deferred} that fires with the event's id once it is stored.
        @raise sse_twisted.event.InvalidEventField: If the event cannot be
            encoded; nothing is kept then.
        @raise sse_twisted.retained.TooManyKeys: If C{key} is a new key
            beyond the limit (a shared log fails its L{Deferred} with it).
        """

    def replay(
        self,
        after: str,
        topics: Collection[str],
        write: Callable[[bytes], object],
        exact: bool = True,
    ) -> bool | Deferred[bool]:
        """
        Write the events of C{topics} that came after the event C{after}, in
        order, up to the newest, including any event appended by one of
        these very writes.

        @param after: The id of the last event the client received; or,
            if not C{exact}, a position from L{rewind} or L{snapshot}.
        @param topics: The topics whose events are written.
        @param write: Called with each encoded event.
        @param exact: Whether C{after} must be an event still in the
            history; if not, the events after the position that the
            history still holds are written.
        @return: Whether the log could tell which events came after
            C{after}; if not, nothing or only a part was written, and the
            client may have missed events. A shared log answers with a
            L{Deferred}, and the stream must join the fan-out in its
            callback: the log fires it between two deliveries. It waits
            for the log to be readable (bounded), and fails with
            L{LogUnavailable} if it was not in time.
        """

    def hold(self) -> Deferred[None] | None:
        """
        Whether a new stream (without an id) may join the fan-out now.

        @return: C{None} if it may; otherwise (a shared log that has not
            yet read where its stream ends) a L{Deferred} that fails with
            L{LogUnavailable}: the stream cannot know which events it would
            miss, and is told to come back.
        """

    def rewind(self, topics: Collection[str], rewind: Rewind) -> str | Deferred[str]:
        """
        Find where a rewind starts.

        @param topics: The stream's topics.
        @param rewind: How far back.
        @return: The position after which the rewound events come, for
            L{replay} with C{exact} false.
        """

    def snapshot(self, topics: Collection[str]) -> Snapshot | Deferred[Snapshot]:
        """
        Read the retained values of C{topics} and the log position they
        are current at, in one step.

        @param topics: The stream's topics.
        @return: The snapshot.
        """

    def between(
        self, after: str, until: str, topics: Collection[str]
    ) -> list[Record] | Deferred[list[Record]]:
        """
        The events of C{topics} after the position C{after} up to the event
        C{until}, in order, as far as the history holds them: those a
        snapshot read at C{until} came too late for, for a stream that
        opened at C{after}.

        @param after: A position: an event's id, or C{""} for the start.
        @param until: The id of the last event wanted.
        @param topics: The topics whose events are wanted.
        """


class MemoryLog:
    """
    The log of one process: the last C{history} events, in memory.

    Event ids are C{"<instance>-<sequence>"}: the sequence increases strictly
    within one log, and the instance part tells a log's ids from those of an
    earlier run, so that a client resuming after a restart is told it may
    have missed events instead of being silently given the wrong ones.
    """

    def __init__(
        self,
        history: int = 1000,
        instance: str | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: IReactorTime | None = None,
    ) -> None:
        """
        @param history: How many events are kept for resuming clients; C{0}
            turns resuming off.
        @param instance: The prefix of this log's event ids; by default
            derived from the wall-clock time of its creation.
        @param max_keys: The most retained values, across all topics.
        @param clock: Tells when each event is stored, for rewinds by
            time; by default the wall clock.
        @raise ValueError: If C{history} or C{max_keys} is negative.
        """
        if history < 0:
            raise ValueError("history must not be negative")
        self._instance = instance if instance is not None else _time_token()
        self._records: deque[Record] = deque(maxlen=history)
        self._stored: deque[float] = deque(maxlen=history)
        self._retained: RetainedValues[Record] = RetainedValues(max_keys)
        self._now = time.time if clock is None else clock.seconds
        self._seq = 0
        self._replays = ReplayMemo()

    @property
    def last_id(self) -> str | None:
        return self._id(self._seq) if self._seq else None

    def append(
        self, data: str, event: str | None, topic: str, key: str | None = None
    ) -> Record:
        if key is not None:
            self._retained.check(topic, key, data)
        seq = self._seq + 1
        event_id = self._id(seq)
        wire = encode_event(data, event=event, id=event_id)
        record = Record(event_id, topic, wire, key)
        self._seq = seq
        self._records.append(record)
        self._stored.append(self._now())
        self._retained.keep(record, data)
        return record

    def replay(
        self,
        after: str,
        topics: Collection[str],
        write: Callable[[bytes], object],
        exact: bool = True,
    ) -> bool:
        if exact and self._replays.write_kept(self._seq, after, topics, write):
            return True
        seq = 0 if after == "" and not exact else self._parse(after)
        if seq is None:
            return False
        if not exact:
            seq = max(seq, self._seq - len(self._records))
        first = seq - (self._seq - len(self._records))
        if first < 0:
            return False
        wire = b"".join(
            record.wire
            for record in islice(self._records, first, None)
            if record.topic in topics
        )
        if exact:
            self._replays.keep(self._seq, after, topics, wire)
        _write_unless_empty(wire, write)
        return True

    def hold(self) -> None:
        """
        A memory log is always ready.
        """
        return None

    def rewind(self, topics: Collection[str], rewind: Rewind) -> str:
        records, stored = self._records, self._stored
        start = len(records)
        if rewind.count is not None:
            wanted = rewind.count
            while start > 0 and wanted > 0:
                start -= 1
                wanted -= records[start].topic in topics
        elif rewind.seconds is not None:
            since = self._now() - rewind.seconds
            while start > 0 and stored[start - 1] >= since:
                start -= 1
        return self._id(self._seq - len(records) + start)

    def snapshot(self, topics: Collection[str]) -> Snapshot:
        return Snapshot(self._retained.values(topics), self.last_id or "")

    def between(self, after: str, until: str, topics: Collection[str]) -> list[Record]:
        first = 0 if after == "" else self._parse(after)
        last = self._parse(until)
        if first is None or last is None:
            return []
        oldest = self._seq - len(self._records) + 1
        return [
            record
            for record in islice(
                self._records, max(first + 1 - oldest, 0), max(last + 1 - oldest, 0)
            )
            if record.topic in topics
        ]

    def _id(self, seq: int) -> str:
        return f"{self._instance}-{seq}"

    def _parse(self, event_id: str) -> int | None:
        instance, _, seq = event_id.rpartition("-")
        if instance != self._instance or not _is_sequence(seq):
            return None
        number = int(seq)
        return number if number <= self._seq else None


class ReplayMemo:
    """
    What a log's latest replays wrote, while it has read up to the same
    place. After a restart every client resumes after one of a few ids:
    each would otherwise gather and join the same events again (a few
    dozen each, with thousands of clients coming back within a second).
    """

    SIZE = 16
    """The most replays kept."""

    def __init__(self) -> None:
        self._end: object = None
        self._wires: dict[tuple[str, frozenset[str]], bytes] = {}

    def find(self, end: object, after: str, topics: Collection[str]) -> bytes | None:
        """
        @param end: Where the log has read up to; a new place forgets all
            the replays kept.
        @return: What the replay of the events of C{topics} after the
            event C{after} wrote, if it was kept at C{end}.
        """
        if end != self._end:
            self._end = end
            self._wires.clear()
            return None
        return self._wires.get((after, _frozen(topics)))

    def write_kept(
        self,
        end: object,
        after: str,
        topics: Collection[str],
        write: Callable[[bytes], object],
    ) -> bool:
        """
        Write the replay kept for C{end}, C{after} and C{topics}, if any
        (see L{find}).

        @return: Whether one was kept, and so written.
        """
        wire = self.find(end, after, topics)
        if wire is None:
            return False
        _write_unless_empty(wire, write)
        return True

    def forget(self) -> None:
        """
        Forget every replay kept: the log's newest entries changed without
        it reading further.
        """
        self._wires.clear()

    def keep(
        self, end: object, after: str, topics: Collection[str], wire: bytes
    ) -> None:
        """
        Keep C{wire}, what the replay of the events of C{topics} after the
        event C{after} wrote with the log at C{end}, unless L{SIZE} are.
        """
        if end == self._end and len(self._wires) < self.SIZE:
            self._wires[after, _frozen(topics)] = wire


def _write_unless_empty(wire: bytes, write: Callable[[bytes], object]) -> None:
    if wire:
        write(wire)


def _frozen(topics: Collection[str]) -> frozenset[str]:
    return topics if isinstance(topics, frozenset) else frozenset(topics)


def _is_sequence(text: str) -> bool:
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def _time_token() -> str:
    return format(time.time_ns() // 1_000_000, "x")
