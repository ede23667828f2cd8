"""
Retained values: the newest event published with each (topic, key), kept
whatever the history forgets, for the snapshot a stream may start with.

An event published with a key replaces the retained value of its (topic,
key); one whose data is the JSON text C{null} deletes it. At most
C{max_keys} values are kept, across all topics: a new key beyond them is
refused with L{TooManyKeys}, while updates and deletions always pass.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Collection, Iterator
from itertools import count
from typing import Generic, Protocol, TypeVar

DEFAULT_MAX_KEYS = 10_000
"""How many retained values are kept, across all topics, by default."""

MAX_KEY_LENGTH = 128
"""The longest key, in characters."""

DELETION = "null"
"""The data that, published with a key, deletes its retained value."""

_BAD_KEY = re.compile(r"[\r\n\x00]")


def is_key(key: object) -> bool:
    """
    @return: Whether C{key} may be an event's key: a string of 1 to
        L{MAX_KEY_LENGTH} characters without CR, LF or NUL.
    """
    return (
        isinstance(key, str)
        and 0 < len(key) <= MAX_KEY_LENGTH
        and _BAD_KEY.search(key) is None
    )


class TooManyKeys(Exception):
    """
    A publish with a new key was refused: the retained values are at their
    limit. Nothing was published.
    """

    def __init__(self, limit: int) -> None:
        """
        @param limit: The most retained values.
        """
        super().__init__(
            f"at most {limit} keys are retained; delete one (data null) first"
        )
        self.limit = limit


class Keyed(Protocol):
    """
    What a retained value is: an event with a topic and a key.
    """

    @property
    def topic(self) -> str: ...

    @property
    def key(self) -> str | None: ...


V = TypeVar("V", bound=Keyed)


class RetainedValues(Generic[V]):
    """
    The retained values of one process, in memory: per topic, each key's
    newest event, kept in the order they were stored (which is the log's
    order, since the log stores one event at a time).
    """

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        """
        @param max_keys: The most values kept, across all topics.
        @raise ValueError: If C{max_keys} is negative.
        """
        if max_keys < 0:
            raise ValueError("max_keys must not be negative")
        self._max_keys = max_keys
        self._topics: dict[str, dict[str, tuple[int, V]]] = {}
        self._count = 0
        self._order = count()

    def __len__(self) -> int:
        """
        @return: How many values are kept.
        """
        return self._count

    def check(self, topic: str, key: str, data: str) -> None:
        """
        Make sure an event with C{key} and C{data} may be published on
        C{topic}, before it is given an id.

        @raise TooManyKeys: If it would be a new value beyond the limit.
        """
        if data == DELETION or self._count < self._max_keys:
            return
        if key not in self._topics.get(topic, {}):
            raise TooManyKeys(self._max_keys)

    def keep(self, value: V, data: str) -> None:
        """
        Keep C{value} as the newest of its (topic, key), or forget that
        (topic, key) if C{data} is L{DELETION}. Values without a key are
        not kept.

        @param value: A published event, checked with L{check}.
        @param data: Its data.
        """
        key = value.key
        if key is None:
            return
        values = self._topics.setdefault(value.topic, {})
        if values.pop(key, None) is not None:
            self._count -= 1
        if data == DELETION:
            if not values:
                del self._topics[value.topic]
            return
        values[key] = (next(self._order), value)
        self._count += 1

    def values(self, topics: Collection[str]) -> list[V]:
        """
        @param topics: Topic names.
        @return: The retained values of C{topics}, in the order they were
            stored.
        """
        per_topic: list[Iterator[tuple[int, V]]] = [
            iter(self._topics[topic].values())
            for topic in dict.fromkeys(topics)
            if topic in self._topics
        ]
        return [value for _, value in heapq.merge(*per_topic, key=_order)]


def _order(entry: tuple[int, object]) -> int:
    return entry[0]
