"""
The hub: the registry of open streams, and the fan-out of each event of the
event log to the streams subscribed to its topic.

The hub knows nothing of HTTP. It delivers bytes to L{EventSink}s, so that an
HTTP response or a fake in a test can plug into it; and it keeps no events
itself: ids, history and replay are the L{sse_twisted.log.EventLog}'s. Each
event is encoded exactly once, and the same C{bytes} object is handed to
every recipient.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Any, NamedTuple, Protocol, TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from sse_twisted.event import encode_comment, encode_event
from sse_twisted.log import (
    EventLog,
    LogUnavailable,
    MemoryLog,
    Record,
    Rewind,
    Snapshot,
)
from sse_twisted.observer import Observer
from sse_twisted.ops.throttle import LogSummary

DEFAULT_TOPIC = "default"
"""The topic of streams that name none, and of the demo's messages."""

MAX_EVENT_NAME = 128
"""The longest event type, in characters."""

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._~:-]{1,64}")


def is_topic_name(name: str) -> bool:
    """
    @return: Whether C{name} is a topic name: 1 to 64 letters, digits or
        C{. _ ~ : -}.
    """
    return _TOPIC_NAME.fullmatch(name) is not None


RESYNC_EVENT = "resync"
"""
The event type sent to a resuming client whose C{Last-Event-ID} is not in
the history any more (or never was): events may have been missed, and the
application should fetch its state afresh. Its data is a JSON object with
the C{lastEventId} the client sent.
"""

RETURN_CROWD = 50
"""
Clients resuming within L{RETURN_WINDOW} that make a crowd (2,000 a second):
the sign of a restart, after which every client comes back at once.
"""

RETURN_WINDOW = 0.025
"""
The window, in seconds, in which L{RETURN_CROWD} resuming clients make a
crowd: a crowd has passed once the last L{RETURN_CROWD} clients did not all
come back within the last window, at most that long after its last client.
"""

RETURN_HOLD = 0.5
"""
The longest time, in seconds, a live event is held while a crowd of clients
comes back (see L{Hub}), unless the hub is given another.
"""

SNAPSHOT_EVENT = "snapshot"
"""
The event type that ends a snapshot: its data is a JSON object with the
C{count} of retained values sent before it, its id the log position they
were read at; the live events after that position follow.
"""


class EventSink(Protocol):
    """
    One open stream, as the hub sees it.
    """

    def write(self, data: bytes, conflate: Hashable | None = None) -> None:
        """
        Queue C{data} for the client. Must not raise when the client is gone.

        @param data: Encoded events or comments.
        @param conflate: If given, the (topic, key) of a keyed event on a
            conflated topic: while the client is behind, a newer event with
            the same C{conflate} may replace this one before it is sent.
        """

    def close(self, farewell: bytes = b"") -> None:
        """
        Write C{farewell}, then end the stream.
        """


class SinkGroup(Protocol):
    """
    The streams of one topic, as the hub fans out to them.
    """

    def add(self, sink: EventSink) -> None:
        """
        Add C{sink}.
        """

    def discard(self, sink: EventSink) -> None:
        """
        Remove C{sink}, if it is in.
        """

    def __len__(self) -> int:
        """
        @return: How many streams are in.
        """

    def write(self, data: bytes, conflate: Hashable | None = None) -> list[EventSink]:
        """
        Write C{data} to every stream in.

        @param conflate: Passed on to the streams that are behind (see
            L{EventSink.write}).
        @return: The streams whose write raised (logged already).
        """


class SinkSet:
    """
    The plain L{SinkGroup}: each stream written in turn.
    """

    __slots__ = ("_sinks",)

    def __init__(self) -> None:
        self._sinks: set[EventSink] = set()

    def add(self, sink: EventSink) -> None:
        self._sinks.add(sink)

    def discard(self, sink: EventSink) -> None:
        self._sinks.discard(sink)

    def __len__(self) -> int:
        return len(self._sinks)

    def write(self, data: bytes, conflate: Hashable | None = None) -> list[EventSink]:
        return write_each(tuple(self._sinks), data, conflate)


def write_each(
    sinks: Iterable[EventSink], data: bytes, conflate: Hashable | None = None
) -> list[EventSink]:
    """
    Write C{data} to each of C{sinks}, logging any that raises.

    @param conflate: See L{EventSink.write}.
    @return: The sinks whose write raised.
    """
    failed = []
    for sink in sinks:
        try:
            if conflate is None:
                sink.write(data)
            else:
                sink.write(data, conflate)
        except Exception:
            Hub.log.failure("dropping a stream that failed a write")
            failed.append(sink)
    return failed


T = TypeVar("T")


def _then(result: T | Deferred[T], then: Callable[[T], Any]) -> Any:
    """
    Call C{then} with C{result} now, or once it fires if it is a
    L{Deferred}: the in-memory log answers at once, in one step of the
    event loop, a shared one later.
    """
    if isinstance(result, Deferred):
        return result.addCallback(then)
    return then(result)


class _Gathered:
    """
    Writes given to a stream are gathered until L{flush}ed, then written in
    one; once flushed, each is written at once.
    """

    __slots__ = ("_sink", "_wires")

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self._wires: list[bytes] | None = []

    def __call__(self, wire: bytes) -> None:
        if self._wires is None:
            self._sink.write(wire)
        else:
            self._wires.append(wire)

    def flush(self) -> None:
        """
        Write what was gathered, and from now on every write at once.
        """
        wires, self._wires = self._wires, None
        if wires:
            self._sink.write(b"".join(wires))


class _Run(NamedTuple):
    """
    Held events written in one: of one topic, and with the conflation key
    of the one event if it has one.
    """

    topic: str
    wire: bytes
    conflate: Hashable | None
    events: int


def _runs(held: Iterable[_Held]) -> Iterator[_Run]:
    """
    @return: Held events as writes, in order: those in a row of one topic
        without a conflation key joined in one.
    """
    run: list[_Held] = []
    for event in held:
        if run and (event.conflate is not None or event.topic != run[0].topic):
            yield _Run(run[0].topic, b"".join(e.wire for e in run), None, len(run))
            run = []
        if event.conflate is None:
            run.append(event)
        else:
            yield _Run(event.topic, event.wire, event.conflate, 1)
    if run:
        yield _Run(run[0].topic, b"".join(e.wire for e in run), None, len(run))


@dataclass(frozen=True)
class Receipt:
    """
    What became of one published event.

    @ivar id: The id assigned to the event.
    @ivar delivered: The number of streams it was written to; C{None} with
        a shared log, whose events are delivered when read back from it.
    """

    id: str
    delivered: int | None


@dataclass(slots=True)
class _Held:
    """
    A live event held while a crowd of clients comes back.
    """

    topic: str
    wire: bytes
    conflate: Hashable | None


class _ReturnCount:
    """
    Remembers when the last L{RETURN_CROWD} clients resumed: they are a
    crowd while all of them came back within the last L{RETURN_WINDOW}.
    """

    __slots__ = ("_oldest", "_times")

    def __init__(self) -> None:
        self._times = [float("-inf")] * RETURN_CROWD
        self._oldest = 0

    def add(self, now: float) -> None:
        """
        Count one client resuming at C{now}.
        """
        self._times[self._oldest] = now
        self._oldest = (self._oldest + 1) % RETURN_CROWD

    def passes(self) -> float:
        """
        @return: When the crowd passes if no other client resumes: a window
            after the oldest of the last L{RETURN_CROWD} (already past if
            they are not a crowd).
        """
        return self._times[self._oldest] + RETURN_WINDOW

    def crowded(self, now: float) -> bool:
        """
        @return: Whether a crowd is coming back at C{now}.
        """
        return now < self.passes()


@dataclass(slots=True)
class _Subscription:
    topics: tuple[str, ...]
    quiet_since: float


@dataclass(slots=True)
class _Resuming:
    """
    A stream whose start (replay, rewind or snapshot) from a shared log is
    still under way, or that waits for the log to be readable: it joins the
    fan-out when C{replay} fires, and gets keep-alives meanwhile.
    """

    replay: Deferred[Any]
    quiet_since: float


class Hub:
    """
    The registry of open streams and the fan-out of events to them.

    While a crowd of clients comes back at once (L{RETURN_CROWD} resuming
    within L{RETURN_WINDOW}, as after a restart), live events are held, for
    L{RETURN_HOLD} seconds at most by default, and then written together:
    one write per stream instead of one per event, so that the work of
    coming back is not shared with a fan-out to streams that are only half
    there. Nothing is lost or reordered: a stream that opens meanwhile has
    the held events in its replay, or gets them when they are let go, after
    those it had.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        events: EventLog | None = None,
        observer: Observer | None = None,
        groups: Callable[[], SinkGroup] = SinkSet,
        conflated: Callable[[str], bool] | None = None,
        unavailable: Callable[[], bytes] = bytes,
        crowd_hold: float = RETURN_HOLD,
    ) -> None:
        """
        @param clock: The source of time, for keep-alive bookkeeping.
        @param events: The event log that gives published events their ids
            and replays them; by default a L{MemoryLog} of its own.
        @param observer: Told of opened streams, publishes, fan-outs and
            resumes, such as L{sse_twisted.ops.metrics.Metrics}; by default none.
        @param groups: Makes the group of streams of a topic.
        @param conflated: Tells the topics whose keyed events conflate on
            streams that are behind (C{--conflate}); by default none.
        @param unavailable: Makes the last bytes of a stream that could not
            be served because the log could not be read in time, such as
            a jittered C{retry:} field; by default nothing.
        @param crowd_hold: The longest time, in seconds, live events are
            held while a crowd of clients comes back; C{0} holds none.
        """
        self._clock = clock
        self._observer = observer
        self._events: EventLog = MemoryLog() if events is None else events
        self._groups = groups
        self._conflated = conflated
        self._unavailable = unavailable
        self._subscribers: dict[str, SinkGroup] = {}
        self._subscriptions: dict[EventSink, _Subscription] = {}
        self._resuming: dict[EventSink, _Resuming] = {}
        self._last_delivery: dict[str, float] = {}
        self._opened = self._closed = 0
        self._report: IDelayedCall | None = None
        self._resyncs = LogSummary(clock, self._log_resyncs)
        self._resynced_after = ""
        self._resync_wire: tuple[str, str | None, bytes] = ("", None, b"")
        self._returning = _ReturnCount()
        self._crowd_hold = crowd_hold
        self._held: list[_Held] = []
        self._held_since = 0.0
        self._release: IDelayedCall | None = None
        # Streams opened while events are held, with how many held events
        # they have had (in their replay), out of the topics' groups until
        # the held events are let go; and how many of them each topic has.
        self._joining: dict[EventSink, int] = {}
        self._joining_topics: dict[str, int] = {}

    @property
    def clock(self) -> IReactorTime:
        """
        The hub's source of time.
        """
        return self._clock

    def __len__(self) -> int:
        """
        @return: The number of open streams.
        """
        return len(self._subscriptions) + len(self._resuming)

    @property
    def last_id(self) -> str | None:
        """
        The id of the most recently published event, or C{None}.
        """
        return self._events.last_id

    def subscribe(
        self,
        sink: EventSink,
        topics: Iterable[str] = (DEFAULT_TOPIC,),
        last_event_id: str | None = None,
        *,
        rewind: Rewind | None = None,
        snapshot: bool = False,
    ) -> None:
        """
        Register C{sink} for the events of C{topics}.

        When C{last_event_id} is given, the events of those topics published
        after it are written to C{sink} first, in order; if the hub cannot
        tell which events came after it, a L{RESYNC_EVENT} is written
        instead, followed by the snapshot if C{snapshot} is asked for.
        Without C{last_event_id}, a C{rewind} writes the last events of those
        topics first, and a C{snapshot} their retained values and a
        L{SNAPSHOT_EVENT} naming the log position they were read at. Then
        live events follow: the start and the registration happen in one
        step (with a shared log, in the step where the log says the replay
        has caught up), so no event published meanwhile is missed or
        repeated.

        @param sink: The stream.
        @param topics: The topic names; duplicates are ignored.
        @param last_event_id: The id of the last event the client received.
        @param rewind: How far back a first connect starts.
        @param snapshot: Whether the stream starts with the retained values
            of its topics, on a first connect or when it cannot resume.
        """
        topics = tuple(dict.fromkeys(topics))
        wanted = frozenset(topics)
        started: Any = None
        if last_event_id:
            self._returning.add(self._clock.seconds())
            started = _then(
                self._replay(sink, last_event_id, wanted),
                partial(self._replayed, sink, wanted, last_event_id, snapshot),
            )
        elif rewind is not None:
            started = _then(
                self._events.rewind(wanted, rewind), partial(self._follow, sink, wanted)
            )
        elif snapshot:
            # A new stream: as one without a snapshot, told to come back
            # while the log does not know where it ends (see _snapshot).
            started = self._events.hold() or self._snapshot(sink, wanted)
        else:
            started = self._events.hold()
        if started is not None and isinstance(started, Deferred):
            self._resuming[sink] = _Resuming(started, self._clock.seconds())
            started.addCallbacks(
                self._started,
                self._not_started,
                callbackArgs=(sink, topics),
                errbackArgs=(sink,),
            )
            return
        self._register(sink, topics)

    def _started(self, _: object, sink: EventSink, topics: tuple[str, ...]) -> None:
        del self._resuming[sink]
        self._register(sink, topics)

    def _not_started(self, failure: Failure, sink: EventSink) -> None:
        """
        C{sink} could not be started: the log could not be read in time, or
        failed. End it with the C{unavailable} farewell, so that its client
        comes back.
        """
        if failure.check(CancelledError):
            return
        if self._resuming.pop(sink, None) is None:
            return
        if failure.check(LogUnavailable):
            self.log.info("the event log is not readable: a stream is told to retry")
        else:
            self.log.warn(
                "cannot start a stream: {error}; closing it, its client comes back",
                error=failure.getErrorMessage(),
            )
        sink.close(self._unavailable())

    def _snapshot(self, sink: EventSink, topics: Collection[str]) -> Any:
        # The log knows where it ends (hold, or a replay, said so): without
        # a last id it is empty.
        opened_at = self._events.last_id or ""
        return _then(
            self._events.snapshot(topics),
            partial(self._send_snapshot, sink, topics, opened_at),
        )

    def _send_snapshot(
        self,
        sink: EventSink,
        topics: Collection[str],
        opened_at: str,
        snapshot: Snapshot,
    ) -> Any:
        for value in snapshot.values:
            sink.write(value.wire)
        if opened_at == snapshot.position:
            return self._end_snapshot(sink, topics, snapshot, [])
        # A shared log reads the snapshot after the stream opened: what was
        # published meanwhile is the stream's too.
        return _then(
            self._events.between(opened_at, snapshot.position, topics),
            partial(self._end_snapshot, sink, topics, snapshot),
        )

    def _end_snapshot(
        self,
        sink: EventSink,
        topics: Collection[str],
        snapshot: Snapshot,
        meanwhile: list[Record],
    ) -> Any:
        """
        Write the events published after the stream opened and before its
        snapshot was read, but those with a key (the snapshot has their
        values); then the L{SNAPSHOT_EVENT}, and go on after its position.
        """
        for record in meanwhile:
            if record.key is None:
                sink.write(record.wire)
        sink.write(
            encode_event(
                json.dumps({"count": len(snapshot.values)}),
                event=SNAPSHOT_EVENT,
                id=snapshot.position,
            )
        )
        return self._follow(sink, topics, snapshot.position)

    def _follow(self, sink: EventSink, topics: Collection[str], position: str) -> Any:
        """
        Write the events after C{position}, then let the stream join.
        """
        return _then(
            self._replay(sink, position, topics, exact=False),
            partial(self._followed, sink, position),
        )

    def _replay(
        self, sink: EventSink, after: str, topics: Collection[str], exact: bool = True
    ) -> bool | Deferred[bool]:
        """
        Have the log replay to C{sink} the events of C{topics} after
        C{after} (see L{EventLog.replay}). Those it has at hand (all of
        them, for the in-memory log and for a resume from a shared log's
        newest entries) are written in one write: one chunk of the response
        instead of one per event, for a client resuming after a restart,
        which is owed a few dozen. Should that write publish events (the
        hub does not know what a sink's write does), they are replayed
        after it, as they would have been one by one.
        """
        while True:
            gathered = _Gathered(sink)
            replayed = self._events.replay(after, topics, gathered, exact)
            end = self._events.last_id
            gathered.flush()
            if (
                isinstance(replayed, Deferred)
                or not replayed
                or end is None
                or self._events.last_id == end
            ):
                return replayed
            after, exact = end, True

    def _followed(self, sink: EventSink, position: str, replayed: bool) -> None:
        if not replayed:
            self._tell_resync(sink, position)

    def _register(self, sink: EventSink, topics: tuple[str, ...]) -> None:
        self._subscriptions[sink] = _Subscription(topics, self._clock.seconds())
        if self._held:
            # It has every event held so far; those held later it gets when
            # they are let go, as it joins the groups.
            self._joining[sink] = len(self._held)
            for topic in topics:
                self._joining_topics[topic] = self._joining_topics.get(topic, 0) + 1
        else:
            self._join(sink, topics)
        self._note(opened=1)

    def _join(self, sink: EventSink, topics: Iterable[str]) -> None:
        for topic in topics:
            group = self._subscribers.get(topic)
            if group is None:
                group = self._subscribers[topic] = self._groups()
            group.add(sink)

    def unsubscribe(self, sink: EventSink) -> None:
        """
        Forget C{sink}; nothing more is written to it. Unknown sinks are
        ignored, so this may be called more than once.

        @param sink: The stream.
        """
        resuming = self._resuming.pop(sink, None)
        if resuming is not None:
            resuming.replay.cancel()
        subscription = self._subscriptions.pop(sink, None)
        if subscription is None:
            return
        joining = self._joining.pop(sink, None) is not None
        for topic in subscription.topics:
            if joining:
                self._joining_topics[topic] -= 1
                continue
            sinks = self._subscribers[topic]
            sinks.discard(sink)
            if not sinks:
                del self._subscribers[topic]
                self._last_delivery.pop(topic, None)
        self._note(closed=1)

    def publish(
        self,
        data: str,
        *,
        event: str | None = None,
        topic: str = DEFAULT_TOPIC,
        key: str | None = None,
    ) -> Receipt | Deferred[Receipt]:
        """
        Append the event to the log, and write it, with its id, to every
        stream subscribed to C{topic}.

        @param data: The payload.
        @param event: The event type, or C{None} for C{message}.
        @param topic: The topic.
        @param key: Makes the event the retained value of (C{topic},
            C{key}), or deletes that value if C{data} is C{null}.
        @return: The event's id and how many streams it was written to; with
            a shared log, a L{Deferred} that fires with the id once the log
            has stored the event (which the log delivers later).
        @raise sse_twisted.event.InvalidEventField: If the event cannot be
            encoded; nothing is published then.
        @raise sse_twisted.retained.TooManyKeys: If C{key} is new and the
            retained values are at their limit; nothing is published then
            (with a shared log, the L{Deferred} fails with it).
        """
        appended = self._events.append(data, event, topic, key)
        if isinstance(appended, Deferred):
            return appended.addCallback(self._stored)
        self._published()
        return Receipt(appended.id, self.deliver(appended))

    def _stored(self, event_id: str) -> Receipt:
        self._published()
        return Receipt(event_id, None)

    def _published(self) -> None:
        if self._observer is not None:
            self._observer.published()

    def deliver(self, record: Record) -> int:
        """
        Write an event of the log to every stream subscribed to its topic.

        @param record: The event.
        @return: How many streams it was written to.
        """
        key, conflated = record.key, self._conflated
        if key is None or conflated is None or not conflated(record.topic):
            return self._deliver(record.topic, record.wire)
        return self._deliver(record.topic, record.wire, (record.topic, key))

    def broadcast(
        self, data: str, *, event: str | None = None, topic: str = DEFAULT_TOPIC
    ) -> int:
        """
        Write a passing event, without id and not kept for replay, to every
        stream subscribed to C{topic}. Such events leave the client's
        C{Last-Event-ID} as it was.

        @param data: The payload.
        @param event: The event type, or C{None} for C{message}.
        @param topic: The topic.
        @return: How many streams it was written to.
        """
        return self._deliver(topic, encode_event(data, event=event))

    def send_keepalives(self, idle: float) -> int:
        """
        Write a comment to every stream to which nothing has been written for
        at least C{idle} seconds, so that proxies do not cut it.

        Called every quarter of C{idle}, this keeps every stream from staying
        silent for more than 1.25 times C{idle}.

        @param idle: The silence, in seconds, that earns a comment.
        @return: How many streams got one.
        """
        now = self._clock.seconds()
        comment = encode_comment()
        quiet = []
        for sink, subscription in self._subscriptions.items():
            last = max(
                (self._last_delivery.get(t, 0.0) for t in subscription.topics),
                default=0.0,
            )
            if now - max(last, subscription.quiet_since) >= idle:
                quiet.append((sink, subscription))
        for sink, subscription in quiet:
            subscription.quiet_since = now
            sink.write(comment)
        waiting = [
            (sink, resuming)
            for sink, resuming in self._resuming.items()
            if now - resuming.quiet_since >= idle
        ]
        for sink, resuming in waiting:
            resuming.quiet_since = now
            sink.write(comment)
        return len(quiet) + len(waiting)

    def close_all(self, farewell: Callable[[], bytes] = bytes) -> None:
        """
        End every open stream, writing a farewell to each first.

        @param farewell: Makes the last bytes for each stream, such as a
            C{retry:} field; by default nothing.
        """
        self.release_held()
        for sink in [*self._subscriptions, *self._resuming]:
            self.unsubscribe(sink)
            sink.close(farewell())

    def _note(self, opened: int = 0, closed: int = 0) -> None:
        """
        Count streams opening and closing, for one log line at the end of
        this turn of the event loop: a burst of thousands of connections
        costs one line, not thousands.
        """
        self._opened += opened
        self._closed += closed
        if self._report is None:
            self._report = self._clock.callLater(0, self._log_streams)

    def _log_streams(self) -> None:
        self._report = None
        if self._observer is not None and self._opened:
            self._observer.streams_opened(self._opened)
        self.log.info(
            "streams opened: {opened}, closed: {closed}; {count} open",
            opened=self._opened,
            closed=self._closed,
            count=len(self),
        )
        self._opened = self._closed = 0

    def _deliver(
        self, topic: str, wire: bytes, conflate: Hashable | None = None
    ) -> int:
        if self._held or (
            self._crowd_hold and self._returning.crowded(self._clock.seconds())
        ):
            return self._hold(_Held(topic, wire, conflate))
        return self._fan_out(topic, wire, conflate)

    def _fan_out(
        self,
        topic: str,
        wire: bytes,
        conflate: Hashable | None = None,
        events: int = 1,
    ) -> int:
        """
        Write C{wire}, C{events} events, to the streams of C{topic}.

        @return: To how many streams.
        """
        group = self._subscribers.get(topic)
        if not group:
            return 0
        observer = self._observer
        started = perf_counter() if observer is not None else 0.0
        count = len(group)
        self._last_delivery[topic] = self._clock.seconds()
        failed = group.write(wire, conflate)
        for sink in failed:
            self.unsubscribe(sink)
        delivered = count - len(failed)
        if observer is not None:
            observer.fanned_out(delivered * events, perf_counter() - started)
        return delivered

    def _hold(self, held: _Held) -> int:
        """
        Hold a live event while a crowd comes back.

        @return: How many streams it is for.
        """
        if not self._held:
            now = self._held_since = self._clock.seconds()
            self._release = self._clock.callLater(
                self._release_delay(now, self._crowd_hold), self._maybe_release
            )
        self._held.append(held)
        group = self._subscribers.get(held.topic)
        return (len(group) if group else 0) + self._joining_topics.get(held.topic, 0)

    def _release_delay(self, now: float, left: float) -> float:
        """
        @return: How long from C{now} until the crowd has passed, if no
            other client resumes meanwhile, or C{left} if sooner.
        """
        return max(0.0, min(self._returning.passes() - now, left))

    def _maybe_release(self) -> None:
        self._release = None
        now = self._clock.seconds()
        left = self._held_since + self._crowd_hold - now
        if left > 0 and self._returning.crowded(now):
            self._release = self._clock.callLater(
                self._release_delay(now, left), self._maybe_release
            )
        else:
            self.release_held()

    def release_held(self) -> None:
        """
        Write the live events held while a crowd came back (see L{Hub}), in
        order: those of one topic in a row in one write to its streams; and
        to each stream opened meanwhile, those it does not have yet. Then
        those streams join the fan-out.
        """
        if self._release is not None:
            self._release.cancel()
            self._release = None
        held, self._held = self._held, []
        joining, self._joining = self._joining, {}
        self._joining_topics.clear()
        for run in _runs(held):
            self._fan_out(*run)
        started = perf_counter()
        delivered = 0
        # Streams that came back at the same point of the hold, for the same
        # topics, are owed the same writes: made once for all of them.
        owed: dict[tuple[int, tuple[str, ...]], list[_Run]] = {}
        for sink, had in joining.items():
            subscription = self._subscriptions.get(sink)
            if subscription is None:
                continue  # gone while the others were written
            topics = subscription.topics
            runs = owed.get((had, topics))
            if runs is None:
                runs = owed[had, topics] = list(
                    _runs(h for h in held[had:] if h.topic in topics)
                )
            try:
                for run in runs:
                    if run.conflate is None:
                        sink.write(run.wire)
                    else:
                        sink.write(run.wire, run.conflate)
                    delivered += run.events
            except Exception:
                self.log.failure("dropping a stream that failed a write")
                self.unsubscribe(sink)
                continue
            self._join(sink, topics)
        if delivered and self._observer is not None:
            self._observer.fanned_out(delivered, perf_counter() - started)
        if held:
            self.log.info(
                "{count} live {events} held {seconds} s while a crowd of"
                " clients came back",
                count=len(held),
                events="event" if len(held) == 1 else "events",
                # Formatted here: a worker's log reaches its parent as JSON,
                # which keeps the value, not the format.
                seconds=f"{self._clock.seconds() - self._held_since:.2f}",
            )

    def resync(self, last_event_id: str) -> None:
        """
        Tell every open stream that it may have missed events after
        C{last_event_id} (as when a shared log lost events this process never
        read), with a L{RESYNC_EVENT} whose id is the log's last.

        @param last_event_id: The id after which events may be missing.
        """
        self.release_held()
        wire = self._resync_event(last_event_id)
        for sink in list(self._subscriptions):
            sink.write(wire)

    def _replayed(
        self,
        sink: EventSink,
        topics: Collection[str],
        last_event_id: str,
        snapshot: bool,
        replayed: bool,
    ) -> Any:
        if self._observer is not None:
            self._observer.resumed(replayed)
        if replayed:
            return None
        self._tell_resync(sink, last_event_id)
        return self._snapshot(sink, topics) if snapshot else None

    def _tell_resync(self, sink: EventSink, last_event_id: str) -> None:
        self._resynced_after = last_event_id
        self._resyncs.add()
        sink.write(self._resync_event(last_event_id))

    def _log_resyncs(self, count: int) -> None:
        """
        One line for the streams told to resync since the last one: after a
        restart of a server with an in-memory log, that is every client.
        """
        self.log.info(
            "cannot resume {count} streams (the last after {id}): sent {event}",
            count=count,
            id=self._resynced_after,
            event=RESYNC_EVENT,
        )

    def _resync_event(self, last_event_id: str) -> bytes:
        """
        @return: The L{RESYNC_EVENT} for a stream that resumed after
            C{last_event_id}, encoded once for all such streams until the
            log moves on: after a restart, every client sends the same id.
        """
        after, last_id, wire = self._resync_wire
        if (after, last_id) != (last_event_id, self.last_id) or not wire:
            last_id = self.last_id
            wire = encode_event(
                json.dumps({"lastEventId": last_event_id}),
                event=RESYNC_EVENT,
                id=last_id or "",
            )
            self._resync_wire = (last_event_id, last_id, wire)
        return wire
