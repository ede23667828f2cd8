"""
The event log in a Redis stream, shared by every ssedemo process on it.

Each event is one stream entry with the fields C{data}, C{event} (optional)
and C{topic} (optional, C{default} when absent); its id is the entry's id.
Publishing appends with C{XADD ... MAXLEN ~ <history>} on one connection;
another connection reads every new entry with C{XREAD BLOCK} and hands it to
the hub, so every process delivers the same events in the same order, its
own ones included. Entries that cannot be sent are skipped, logged and
counted.

An event with a key is appended by a Lua script that writes its retained
value too (L{sse_twisted.redis.retained}); snapshots read them with the
stream's position, and rewinds find their start with C{XREVRANGE} (or
C{TIME}), then replay like a resume.

A client that resumes is replayed from the stream (C{XRANGE}) while this
process's reader goes on: the replay writes up to where it got, then what
the reader read meanwhile, and the stream joins the hub once the reader has
passed everything written to it. So it gets no event twice and misses none,
even when its id came from a process that is ahead of this one.

Nobody is answered from a log that was not read: until the reader knows
where the stream ends (just after start, or while Redis cannot be reached
at start), and while Redis cannot be reached, a resuming stream is held (at
most L{HOLD_TIMEOUT}) and replayed once the log is readable again; a new
stream before the first read is held the same way. Past the time-out, the
stream fails with L{LogUnavailable}: the hub tells its client to retry.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from sse_twisted.event import InvalidEventField, encode_event
from sse_twisted.hub import DEFAULT_TOPIC, MAX_EVENT_NAME, is_topic_name
from sse_twisted.log import LogUnavailable, Record, ReplayMemo, Rewind, Snapshot
from sse_twisted.redis.client import (
    COMMAND_TIMEOUT,
    NotReplicated,
    RedisConnection,
    RedisError,
)
from sse_twisted.redis.recent import RECENT, EntryId, RecentEntries
from sse_twisted.redis.retained import publish_keyed, read_snapshot
from sse_twisted.retained import DEFAULT_MAX_KEYS

READ_BLOCK = 2.0
"""Seconds one C{XREAD} waits for new entries before it is sent again."""

READ_COUNT = 1000
"""The most entries one C{XREAD} (or one page of a replay) returns."""

READ_RETRY = 1.0
"""Seconds before reading again after Redis refused to read."""

HOLD_TIMEOUT = 5.0
"""
Seconds a stream waits for the log to be readable before its client is
told to retry.
"""


def parse_entry_id(text: str) -> EntryId | None:
    """
    @return: The entry id C{text} as numbers, or C{None} if it is not one.
    """
    milliseconds, dash, sequence = text.partition("-")
    if not (dash and _is_number(milliseconds) and _is_number(sequence)):
        return None
    return int(milliseconds), int(sequence)


def format_entry_id(entry_id: EntryId) -> str:
    """
    @return: C{entry_id} as Redis writes it.
    """
    return f"{entry_id[0]}-{entry_id[1]}"


def preceding(entry_id: EntryId) -> EntryId:
    """
    @return: The greatest entry id less than C{entry_id} (not C{0-0}).
    """
    milliseconds, sequence = entry_id
    return (milliseconds, sequence - 1) if sequence else (milliseconds - 1, _MAX_SEQ)


_MAX_SEQ = (1 << 64) - 1


def _is_number(text: str) -> bool:
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


class Listener(Protocol):
    """
    What the log feeds: the hub.
    """

    def deliver(self, record: Record) -> int:
        """
        Write an event to the streams of its topic.
        """

    def resync(self, last_event_id: str) -> None:
        """
        Tell every stream it may have missed events after C{last_event_id}.
        """


class Helper(Protocol):
    """
    Something the log starts and stops with its connections (such as the
    L{sse_twisted.redis.sentinel.SentinelWatch} that moves them).
    """

    def start(self) -> None:
        """Start."""

    def stop(self) -> Deferred[None]:
        """Stop; the result fires once stopped."""


@dataclass(eq=False)
class _Resumption:
    """
    One stream being replayed: where its client is, what it has been written
    up to (C{mark}), and what the reader read while the replay was fetched.
    """

    after: EntryId
    topics: Collection[str]
    write: Callable[[bytes], object]
    done: Deferred[bool]
    mark: EntryId
    held: list[tuple[EntryId, Record | None]] | None = field(default_factory=list)
    waiting: Deferred[None] | None = None


class RedisLog(Service):
    """
    The L{sse_twisted.log.EventLog} of a Redis stream.
    """

    log = Logger()

    def __init__(
        self,
        publisher: RedisConnection,
        reader: RedisConnection,
        clock: IReactorTime,
        key: str = "ssedemo",
        history: int = 1000,
        max_keys: int = DEFAULT_MAX_KEYS,
        replicas: int = 0,
        replica_timeout: float = 1.0,
        helpers: Iterable[Helper] = (),
        hold_timeout: float = HOLD_TIMEOUT,
    ) -> None:
        """
        @param publisher: The connection that appends and replays.
        @param reader: The connection that waits for new entries.
        @param clock: Times the retries.
        @param key: The stream's key.
        @param history: The approximate length the stream is trimmed to.
        @param max_keys: The most retained values, across all topics and
            all processes on the stream.
        @param replicas: How many replicas must have an entry (C{WAIT})
            before L{append} reports it stored.
        @param replica_timeout: Seconds to wait for them.
        @param helpers: Started and stopped with the connections.
        @param hold_timeout: How long, in seconds, a stream waits for the
            log to be readable.
        """
        self._hold_timeout = hold_timeout
        self._waiting: list[Deferred[None]] = []
        self._publisher = publisher
        self._reader = reader
        self._clock = clock
        self._key = key
        self._history = history
        self._max_keys = max_keys
        self._replicas = replicas
        self._replica_timeout = replica_timeout
        self._helpers = list(helpers)
        self._generation = 0
        self._listener: Listener | None = None
        self._position: EntryId | None = None
        self._last_id: str | None = None
        self._checked_from: EntryId | None = None
        self._resumptions: list[_Resumption] = []
        self._recent = RecentEntries(min(RECENT, history))
        self._replays = ReplayMemo()
        self._retry: IDelayedCall | None = None
        self.skipped = 0
        """How many entries were skipped because they cannot be sent."""

    def feed(self, listener: Listener) -> None:
        """
        @param listener: Gets every event read from the stream, in order.
        """
        self._listener = listener

    @property
    def available(self) -> bool:
        """
        Whether both connections to Redis are up.
        """
        return self._publisher.connected and self._reader.connected

    @property
    def readable(self) -> bool:
        """
        Whether a replay can start now: the reader knows where the stream
        ends, and both connections are up.
        """
        return self._position is not None and self.available

    def hold(self) -> Deferred[None] | None:
        """
        @return: C{None} once the reader knows where the stream ends (new
            streams then miss nothing: the reader reads on from there);
            before, a L{Deferred} that fails with L{LogUnavailable}.
        """
        if self._position is not None:
            return None
        return fail(LogUnavailable("the Redis stream has not been read yet"))

    def read_or_given_up(self) -> Deferred[None]:
        """
        @return: Fires once the reader knows where the stream ends, or after
            the hold time-out if it does not by then (Redis unreachable):
            a port that starts listening then serves every stream from the
            first, and tells them to come back while the log stays unread.
        """
        if self._position is not None:
            return succeed(None)
        waiter = self._when_readable()
        waiter.addErrback(lambda f: f.trap(LogUnavailable))
        return waiter

    def _when_readable(self) -> Deferred[None]:
        """
        @return: Fires once L{readable}, or fails with L{LogUnavailable}
            after the hold time-out.
        """
        if self.readable:
            return succeed(None)

        def cancel(_: Deferred[None]) -> None:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            if timer.active():
                timer.cancel()

        def expire() -> None:
            self._waiting.remove(waiter)
            waiter.errback(LogUnavailable("Redis is not readable"))

        waiter: Deferred[None] = Deferred(cancel)
        timer = self._clock.callLater(self._hold_timeout, expire)
        waiter.addBoth(_cancelling(timer))
        self._waiting.append(waiter)
        if not self._publisher.connected:
            self._publisher.when_connected().addCallbacks(
                lambda _: self._wake(), lambda f: f.trap(CancelledError)
            )
        return waiter

    def _wake(self) -> None:
        if not self.readable:
            return
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)

    @property
    def last_id(self) -> str | None:
        """
        The id of the last entry read (or, before any, the newest entry
        when reading started), or C{None}.
        """
        return self._last_id

    def startService(self) -> None:
        super().startService()
        self._publisher.start()
        self._reader.start()
        for helper in self._helpers:
            helper.start()
        self._next()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.errback(LogUnavailable("stopping"))
        stopped = [helper.stop() for helper in self._helpers]
        return gatherResults([*stopped, self._publisher.stop(), self._reader.stop()])

    def append(
        self, data: str, event: str | None, topic: str, key: str | None = None
    ) -> Deferred[str]:
        """
        Append an event to the stream; with a C{key}, keep its retained
        value in the same step (L{sse_twisted.redis.retained}).

        @return: Fires with the entry's id once Redis has stored it (and,
            with C{replicas}, that many replicas have it); fails with
            L{sse_twisted.redis.client.BrokerUnavailable} or
            L{sse_twisted.redis.client.RedisError} if it may not have, or
            with L{sse_twisted.retained.TooManyKeys}.
        @raise InvalidEventField: If the event cannot be encoded.
        """
        encode_event(data, event=event)
        stored: Deferred[str]
        if key is not None:
            stored = publish_keyed(
                self._publisher,
                self._key,
                self._history,
                self._max_keys,
                data,
                event,
                topic,
                key,
            )
        else:
            fields = ["data", data, "topic", topic]
            if event is not None:
                fields += ["event", event]
            stored = self._publisher.execute(
                "XADD", self._key, "MAXLEN", "~", self._history, "*", *fields
            ).addCallback(bytes.decode, "ascii")
        if self._replicas:
            stored.addCallback(self._replicated)
        return stored

    def _replicated(self, entry_id: str) -> Deferred[str]:
        """
        Wait (C{WAIT}) until C{replicas} replicas have the entry C{entry_id}.

        @return: Fires with C{entry_id}; fails with
            L{sse_twisted.redis.client.NotReplicated} if too few have it in
            time (it is stored on the master, but may be lost with it).
        """
        timeout = self._replica_timeout
        acknowledged = self._publisher.execute(
            "WAIT",
            self._replicas,
            max(1, round(timeout * 1000)),
            timeout=timeout + COMMAND_TIMEOUT,
        )

        def counted(replicas: int) -> str:
            if replicas < self._replicas:
                raise NotReplicated(
                    f"entry {entry_id} reached {replicas} of {self._replicas}"
                    f" replicas within {timeout:g} s: not known to be stored"
                )
            return entry_id

        return acknowledged.addCallback(counted)

    def replay(
        self,
        after: str,
        topics: Collection[str],
        write: Callable[[bytes], object],
        exact: bool = True,
    ) -> bool | Deferred[bool]:
        """
        Write the events of C{topics} after the entry C{after}, then those
        the reader reads meanwhile, until the reader has passed them all.
        When C{after} is one of the newest entries the reader has read, this
        happens at once, from memory, and C{True} is returned.

        @param exact: Whether C{after} must be an entry of the stream; if
            not, it is a position (C{""} for the stream's start), and the
            entries after it that the stream holds are written.
        @return: Fires with C{True} at the moment the caller must let the
            stream join the fan-out; or with C{False} if C{after} is not an
            entry of the stream (any more); fails with L{LogUnavailable}
            if the log was not readable within the hold time-out.
        """
        at_hand = exact and self.readable
        if at_hand and self._replays.write_kept(self._last_id, after, topics, write):
            return True
        if not exact and not after:
            after = "0-0"
        key = parse_entry_id(after)
        if key is None:
            return succeed(False)
        newer = self._recent.after(key) if at_hand else None
        if newer is not None:
            wire = b"".join(record.wire for record in newer if record.topic in topics)
            self._replays.keep(self._last_id, after, topics, wire)
            if wire:
                write(wire)
            return True

        def forget(_: Deferred[bool]) -> None:
            if resumption in self._resumptions:
                self._resumptions.remove(resumption)
            if resumption.waiting is not None:
                resumption.waiting.cancel()

        resumption = _Resumption(key, topics, write, Deferred(forget), key)
        self._resumptions.append(resumption)
        self._fetch(resumption, after if exact else "(" + after, first=exact)
        return resumption.done

    def snapshot(self, topics: Collection[str]) -> Deferred[Snapshot]:
        """
        Read the retained values of C{topics} with the stream's newest
        entry id, in one atomic step.
        """
        return read_snapshot(self._publisher, self._key, topics)

    def between(
        self, after: str, until: str, topics: Collection[str]
    ) -> Deferred[list[Record]]:
        """
        Read the entries after C{after} up to C{until} from Redis, a page
        at a time.
        """
        found: list[Record] = []
        done: Deferred[list[Record]] = Deferred()

        def read(start: str) -> None:
            page = self._publisher.execute(
                "XRANGE", self._key, start, until, "COUNT", READ_COUNT
            )
            page.addCallbacks(got, done.errback)

        def got(entries: list[Any]) -> None:
            for raw_id, fields in entries:
                record = self._record(_text(raw_id), fields, count=False)
                if record is not None and record.topic in topics:
                    found.append(record)
            if len(entries) >= READ_COUNT:
                read("(" + _text(entries[-1][0]))
            else:
                done.callback(found)

        read("(" + after if after else "-")
        return done

    def rewind(self, topics: Collection[str], rewind: Rewind) -> Deferred[str]:
        """
        Find the position after which the last C{rewind.count} entries of
        C{topics} come (by reading the stream backwards), or the entries
        whose ids' milliseconds are within the last C{rewind.seconds} of
        Redis's clock.
        """
        if rewind.seconds is not None:
            seconds = rewind.seconds
            now = self._publisher.execute("TIME")
            return now.addCallback(_milliseconds).addCallback(
                lambda ms: _position_since(ms - seconds * 1000)
            )
        assert rewind.count is not None
        found: Deferred[str] = Deferred()
        self._look_back("+", rewind.count, topics, found)
        return found

    def _look_back(
        self, end: str, wanted: int, topics: Collection[str], found: Deferred[str]
    ) -> None:
        page = self._publisher.execute(
            "XREVRANGE", self._key, end, "-", "COUNT", READ_COUNT
        )

        def looked(entries: list[Any]) -> None:
            nonlocal wanted
            for raw_id, fields in entries:
                record = self._record(_text(raw_id), fields, count=False)
                if record is not None and record.topic in topics:
                    wanted -= 1
                    if wanted == 0:
                        start = parse_entry_id(record.id)
                        assert start is not None
                        found.callback(format_entry_id(preceding(start)))
                        return
            if len(entries) < READ_COUNT:
                found.callback("0-0")
                return
            self._look_back("(" + _text(entries[-1][0]), wanted, topics, found)

        page.addCallbacks(looked, found.errback)

    def _fetch(self, resumption: _Resumption, start: str, first: bool) -> None:
        if resumption.done.called:
            return
        if not self.readable:
            ready = self._when_readable()
            resumption.waiting = ready
            ready.addCallbacks(
                lambda _: self._fetch(resumption, start, first),
                self._unreadable,
                errbackArgs=(resumption,),
            )
            return
        page = self._publisher.execute(
            "XRANGE", self._key, start, "+", "COUNT", READ_COUNT
        )
        page.addCallbacks(
            self._fetched,
            self._fetch_failed,
            callbackArgs=(resumption, first),
            errbackArgs=(resumption, start, first),
        )

    def _fetched(
        self, entries: list[Any], resumption: _Resumption, first: bool
    ) -> None:
        if resumption.done.called:
            return
        if first:
            if not entries or parse_entry_id(_text(entries[0][0])) != resumption.after:
                self._finish(resumption, False)
                return
            entries = entries[1:]
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            record = self._record(entry_id, fields, count=False)
            if record is not None and record.topic in resumption.topics:
                resumption.write(record.wire)
            resumption.mark = parse_entry_id(entry_id) or resumption.mark
        if len(entries) + first >= READ_COUNT:
            self._fetch(resumption, "(" + _text(entries[-1][0]), first=False)
            return
        held, resumption.held = resumption.held or [], None
        for key, record in held:
            self._advance(resumption, key, record)
        self._settle(resumption)

    def _fetch_failed(
        self, failure: Failure, resumption: _Resumption, start: str, first: bool
    ) -> None:
        if resumption.done.called:
            return
        self.log.warn(
            "cannot replay from Redis ({error}); waiting for it",
            error=failure.getErrorMessage(),
        )
        # Readable still: the connection has not noticed it was lost yet.
        ready = self._when_readable_later() if self.readable else self._when_readable()
        resumption.waiting = ready
        ready.addCallbacks(
            lambda _: self._fetch(resumption, start, first),
            self._unreadable,
            errbackArgs=(resumption,),
        )

    def _when_readable_later(self) -> Deferred[None]:
        """
        @return: Fires after L{READ_RETRY} seconds if readable then, else
            as L{_when_readable}.
        """
        later = deferLater(self._clock, READ_RETRY, lambda: None)
        return later.addCallback(lambda _: self._when_readable())

    def _unreadable(self, failure: Failure, resumption: _Resumption) -> None:
        if failure.check(CancelledError) or resumption.done.called:
            return
        self._resumptions.remove(resumption)
        resumption.done.errback(failure)

    def _advance(
        self, resumption: _Resumption, key: EntryId, record: Record | None
    ) -> None:
        if key > resumption.mark:
            if record is not None and record.topic in resumption.topics:
                resumption.write(record.wire)
            resumption.mark = key

    def _settle(self, resumption: _Resumption) -> None:
        if self._position is not None and self._position >= resumption.mark:
            self._finish(resumption, True)

    def _finish(self, resumption: _Resumption, replayed: bool) -> None:
        if resumption.done.called:
            return  # cancelled: its stream went away, maybe during a write
        self._resumptions.remove(resumption)
        resumption.done.callback(replayed)

    # The reader.

    def _next(self) -> None:
        """
        Send the next read: C{XREAD BLOCK} from the last entry read, after
        a look at the stream's oldest entry, which tells whether entries
        were trimmed before this process read them.
        """
        self._retry = None
        if not self.running:
            return
        reader = self._reader
        if not reader.connected:
            reader.when_connected().addCallbacks(
                lambda _: self._next(), lambda f: f.trap(CancelledError)
            )
            return
        self._wake()
        if self._position is None:
            newest = reader.execute("XREVRANGE", self._key, "+", "-", "COUNT", RECENT)
            newest.addCallbacks(self._positioned, self._read_failed)
            return
        if reader.generation != self._generation and self._position != (0, 0):
            generation, position = reader.generation, self._position
            found = reader.execute(
                "XREVRANGE", self._key, f"{position[0]}-{position[1]}", "-", "COUNT", 1
            )
            found.addCallbacks(self._rejoined, self._read_failed, (generation,))
            return
        oldest = reader.execute("XRANGE", self._key, "-", "+", "COUNT", 1)
        oldest.addCallbacks(self._check_trimmed, lambda _: None, (self._checked_from,))
        position = self._position
        self._checked_from = position
        batch = reader.execute(
            "XREAD",
            "COUNT",
            READ_COUNT,
            "BLOCK",
            int(READ_BLOCK * 1000),
            "STREAMS",
            self._key,
            f"{position[0]}-{position[1]}",
            timeout=READ_BLOCK + COMMAND_TIMEOUT,
        )
        batch.addCallbacks(self._read, self._read_failed)

    def _positioned(self, newest: list[Any]) -> None:
        """
        The reader knows where the stream ends: after C{newest}, its newest
        entries, newest first, which are kept for resumes (L{RecentEntries}).
        """
        self._generation = self._reader.generation
        self._recent.clear()
        self._replays.forget()
        self._recent.extend(
            (key, self._record(_text(raw_id), fields, count=False))
            for raw_id, fields in reversed(newest)
            if (key := parse_entry_id(_text(raw_id))) is not None
        )
        if newest:
            self._last_id = _text(newest[0][0])
            self._position = parse_entry_id(self._last_id)
        else:
            self._position = (0, 0)
        self.log.info(
            "reading Redis stream {key} after {id}",
            key=self._key,
            id=self._last_id or "its start",
        )
        self._wake()
        self._next()

    def _rejoined(self, found: list[Any], generation: int) -> None:
        """
        On a new connection (to a restarted Redis, or a new master after a
        failover), look up the last entry read: if the stream lacks it, it
        was lost (with a master that no replica had it from), and so may be
        entries after it that this process read and others did not. Every
        stream is told to resync, and reading goes on after the newest
        entry before it, so that no entry of the new master is skipped.
        """
        self._generation = generation
        position = self._position
        newest = parse_entry_id(_text(found[0][0])) if found else (0, 0)
        if position is not None and newest is not None and newest != position:
            lost = self._last_id or ""
            self._position = newest
            self._last_id = _text(found[0][0]) if found else None
            self._checked_from = None
            self.log.warn(
                "entry {id} is gone from Redis stream {key} (a failover or"
                " restart lost it): streams are told to resync; reading on"
                " after {newest}",
                id=lost,
                key=self._key,
                newest=self._last_id or "its start",
            )
            self._resync(lost)
        self._next()

    def _resync(self, after: str) -> None:
        """
        Tell every stream, pending replays included, that events after
        C{after} may be missing; forget the newest entries kept, which the
        next ones read may not follow.
        """
        self._recent.clear()
        self._replays.forget()
        if self._listener is not None:
            self._listener.resync(after)
        for resumption in list(self._resumptions):
            self._finish(resumption, False)

    def _check_trimmed(self, oldest: list[Any], checked_from: EntryId | None) -> None:
        """
        If the oldest entry is newer than the last one read before the
        previous read, entries this process never read may have been
        trimmed: every stream is told to resync.
        """
        if checked_from is None or checked_from == (0, 0) or not oldest:
            return
        first = parse_entry_id(_text(oldest[0][0]))
        if first is None or first <= checked_from:
            return
        after = f"{checked_from[0]}-{checked_from[1]}"
        self.log.warn(
            "entries after {id} were trimmed from Redis before this process"
            " read them: streams are told to resync",
            id=after,
        )
        self._resync(after)

    def _read(self, reply: Sequence[Any] | None) -> None:
        if reply:
            for raw_id, fields in reply[0][1]:
                self._take(_text(raw_id), fields)
        self._wake()
        self._next()

    def _read_failed(self, failure: Failure) -> None:
        if failure.check(CancelledError) or not self.running:
            return
        if failure.check(RedisError):
            self.log.warn(
                "Redis refused to read stream {key}: {error}; trying again",
                key=self._key,
                error=failure.getErrorMessage(),
            )
            self._retry = self._clock.callLater(READ_RETRY, self._next)
            return
        self._next()

    def _take(self, entry_id: str, fields: Sequence[bytes]) -> None:
        key = parse_entry_id(entry_id)
        if key is None:
            return
        record = self._record(entry_id, fields, count=True)
        self._position = key
        self._last_id = entry_id
        self._recent.add(key, record)
        if record is not None and self._listener is not None:
            self._listener.deliver(record)
        for resumption in list(self._resumptions):
            if resumption.held is not None:
                resumption.held.append((key, record))
            else:
                self._advance(resumption, key, record)
                self._settle(resumption)

    def _record(
        self, entry_id: str, fields: Sequence[bytes], count: bool
    ) -> Record | None:
        """
        @return: The entry as an event, or C{None} if it cannot be sent
            (then, when reading, it is logged and counted).
        """
        try:
            values = dict(
                zip(
                    (name.decode("utf-8") for name in fields[::2]),
                    (value.decode("utf-8") for value in fields[1::2]),
                    strict=True,
                )
            )
            topic = values.get("topic", DEFAULT_TOPIC)
            event = values.get("event")
            key = values.get("key")
            if "data" not in values:
                raise InvalidEventField("no data field")
            if not is_topic_name(topic):
                raise InvalidEventField(f"bad topic name {topic!r}")
            if event is not None and not 0 < len(event) <= MAX_EVENT_NAME:
                raise InvalidEventField(f"event type longer than {MAX_EVENT_NAME}")
            wire = encode_event(values["data"], event=event, id=entry_id)
        except (UnicodeDecodeError, ValueError) as e:
            if count:
                self.skipped += 1
                self.log.warn(
                    "skipped Redis entry {id}: {reason} ({skipped} skipped so far)",
                    id=entry_id,
                    reason=str(e),
                    skipped=self.skipped,
                )
            return None
        return Record(entry_id, topic, wire, key)


def _milliseconds(time: list[bytes]) -> int:
    """
    @return: The reply of C{TIME} in milliseconds.
    """
    return int(time[0]) * 1000 + int(time[1]) // 1000


def _position_since(milliseconds: int) -> str:
    """
    @return: The position after which come the entries stored at or after
        C{milliseconds}.
    """
    return format_entry_id(preceding((milliseconds, 0))) if milliseconds > 0 else "0-0"


def _cancelling(timer: IDelayedCall) -> Callable[[object], object]:
    def cancel(result: object) -> object:
        if timer.active():
            timer.cancel()
        return result

    return cancel


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace")
