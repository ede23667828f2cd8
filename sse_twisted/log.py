"""
The event log: ids, the history of recent events, and replay after an id.

The log decides what the events are and in which order; the
L{sse_twisted.hub.Hub} only fans them out to the streams of this process.
L{MemoryLog} is the embedded log of a single process; a shared log
(L{sse_twisted.redis.log.RedisLog}) answers asynchronously, and feeds the
hub every event itself, its own ones included, in the log's order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection
from typing import NamedTuple, Protocol

from twisted.internet.defer import Deferred

from sse_twisted.event import encode_event


class Record(NamedTuple):
    """
    One published event, as it goes to every stream of its topic.

    @ivar id: The event's id.
    @ivar topic: The topic it was published to.
    @ivar wire: The event, encoded with its id, ready to write.
    """

    id: str
    topic: str
    wire: bytes


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
        self, data: str, event: str | None, topic: str
    ) -> Record | Deferred[str]:
        """
        Give an event the next id and keep it.

        @param data: The payload.
        @param event: The event type, or C{None} for C{message}.
        @param topic: The topic.
        @return: The event as it goes out, for the caller to deliver; or,
            from a shared log that delivers its events itself, a
            L{Deferred} that fires with the event's id once it is stored.
        @raise sse_twisted.event.InvalidEventField: If the event cannot be
            encoded; nothing is kept then.
        """

    def replay(
        self, after: str, topics: Collection[str], write: Callable[[bytes], object]
    ) -> bool | Deferred[bool]:
        """
        Write the events of C{topics} that came after the event C{after}, in
        order, up to the newest, including any event appended by one of
        these very writes.

        @param after: The id of the last event the client received.
        @param topics: The topics whose events are written.
        @param write: Called with each encoded event.
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


class MemoryLog:
    """
    The log of one process: the last C{history} events, in memory.

    Event ids are C{"<instance>-<sequence>"}: the sequence increases strictly
    within one log, and the instance part tells a log's ids from those of an
    earlier run, so that a client resuming after a restart is told it may
    have missed events instead of being silently given the wrong ones.
    """

    def __init__(self, history: int = 1000, instance: str | None = None) -> None:
        """
        @param history: How many events are kept for resuming clients; C{0}
            turns resuming off.
        @param instance: The prefix of this log's event ids; by default
            derived from the wall-clock time of its creation.
        @raise ValueError: If C{history} is negative.
        """
        if history < 0:
            raise ValueError("history must not be negative")
        self._instance = instance if instance is not None else _time_token()
        self._records: deque[Record] = deque(maxlen=history)
        self._seq = 0

    @property
    def last_id(self) -> str | None:
        return self._id(self._seq) if self._seq else None

    def append(self, data: str, event: str | None, topic: str) -> Record:
        seq = self._seq + 1
        event_id = self._id(seq)
        record = Record(event_id, topic, encode_event(data, event=event, id=event_id))
        self._seq = seq
        self._records.append(record)
        return record

    def replay(
        self, after: str, topics: Collection[str], write: Callable[[bytes], object]
    ) -> bool:
        seq = self._parse(after)
        if seq is None:
            return False
        while seq < self._seq:
            seq += 1
            index = seq - (self._seq - len(self._records) + 1)
            if index < 0:
                return False
            record = self._records[index]
            if record.topic in topics:
                write(record.wire)
        return True

    def hold(self) -> None:
        """
        A memory log is always ready.
        """
        return None

    def _id(self, seq: int) -> str:
        return f"{self._instance}-{seq}"

    def _parse(self, event_id: str) -> int | None:
        instance, _, seq = event_id.rpartition("-")
        if instance != self._instance or not _is_sequence(seq):
            return None
        number = int(seq)
        return number if number <= self._seq else None


def _is_sequence(text: str) -> bool:
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def _time_token() -> str:
    return format(time.time_ns() // 1_000_000, "x")
