"""
Tests for L{sse_twisted.redis.log}: the reader, the replay and its merge with
live entries, on fake connections whose replies each test gives by hand.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sse_twisted.hub import Hub
from sse_twisted.redis.client import BrokerUnavailable, NotReplicated, RedisError
from sse_twisted.redis.log import HOLD_TIMEOUT, READ_COUNT, RedisLog, parse_entry_id
from sse_twisted.testing import RecordingSink, parse


class FakeConnection:
    """
    Stands for a L{sse_twisted.redis.client.RedisConnection}: commands wait
    until the test answers them, in order.
    """

    def __init__(self) -> None:
        self.connected = True
        self.generation = 1
        self.sent: list[tuple[tuple[Any, ...], Deferred[Any]]] = []
        self.timeouts: list[tuple[tuple[Any, ...], float]] = []
        self.started = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> Deferred[None]:
        for _, reply in self.sent:
            if not reply.called:
                reply.errback(BrokerUnavailable("stopped"))
        return succeed(None)

    def when_connected(self) -> Deferred[None]:
        return Deferred()

    def execute(self, *args: Any, timeout: float = 5.0) -> Deferred[Any]:
        if not self.connected:
            return fail(BrokerUnavailable("down"))
        reply: Deferred[Any] = Deferred()
        self.sent.append((args, reply))
        self.timeouts.append((args, timeout))
        return reply

    def answer(self, command: str, reply: Any) -> tuple[Any, ...]:
        """
        Answer the oldest unanswered C{command}.

        @return: Its arguments.
        """
        for args, waiting in self.sent:
            if args[0] == command and not waiting.called:
                if isinstance(reply, Exception):
                    waiting.errback(reply)
                else:
                    waiting.callback(reply)
                outcome = waiting.result
                if isinstance(outcome, Failure):  # what the log did with it
                    outcome.raiseException()
                return args
        raise AssertionError(f"no {command} waiting in {self.sent}")

    def waiting(self, command: str) -> int:
        return sum(1 for a, d in self.sent if a[0] == command and not d.called)


def entry(entry_id: str, data: str = "", **fields: str) -> list[Any]:
    flat = [b"data", (data or entry_id).encode()]
    for name, value in fields.items():
        flat += [name.encode(), value.encode()]
    return [entry_id.encode(), flat]


def xread(*entries: list[Any]) -> list[Any]:
    return [[b"ssedemo", list(entries)]]


class CountingObserver:
    """
    Counts what the hub tells an observer (the metrics) of.
    """

    def __init__(self) -> None:
        self.counts: dict[str, list[object]] = {}

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.counts.setdefault(name, []).append(args)


class Setup:
    def __init__(self, newest: str | None = "1-0", **options: Any) -> None:
        self.publisher = FakeConnection()
        self.reader = FakeConnection()
        self.clock = Clock()
        self.log = RedisLog(
            self.publisher, self.reader, self.clock, "ssedemo", 100, **options
        )  # type: ignore[arg-type]
        self.observer = CountingObserver()
        self.hub = Hub(self.clock, self.log, observer=self.observer)  # type: ignore[arg-type]
        self.log.feed(self.hub)
        self.log.startService()
        self.reader.answer("XREVRANGE", [entry(newest)] if newest else [])

    def read(self, *entries: list[Any], oldest: str = "1-0") -> None:
        """
        Answer the reader's pending look at the oldest entry and its XREAD.
        """
        self.reader.answer("XRANGE", [entry(oldest)])
        self.reader.answer("XREAD", xread(*entries) if entries else None)


def ids(sink: RecordingSink) -> list[str]:
    return [e.last_event_id for e in sink.parsed().events]


def datas(sink: RecordingSink) -> list[str]:
    return [e.data for e in sink.parsed().events]


def test_entries_read_are_delivered_with_their_ids() -> None:
    """
    Every entry the reader reads goes to the streams of its topic, with the
    entry id as the event id; the reader reads on after the last one.
    """
    s = Setup()
    live = RecordingSink()
    other = RecordingSink()
    s.hub.subscribe(live)
    s.hub.subscribe(other, ["prices"])
    s.read(entry("2-0", "a"), entry("3-0", "b", event="tick", topic="prices"))
    assert [(e.type, e.data, e.last_event_id) for e in live.parsed().events] == [
        ("message", "a", "2-0")
    ]
    assert [(e.type, e.data) for e in other.parsed().events] == [("tick", "b")]
    assert s.hub.last_id == "3-0"
    [(args, _)] = [c for c in s.reader.sent if not c[1].called and c[0][0] == "XREAD"]
    assert args[-1] == "3-0"


@pytest.mark.parametrize(
    "fields,reason",
    [
        ([b"event", b"x"], "no data field"),
        ([b"data", b"x", b"topic", b"bad topic"], "bad topic name"),
        ([b"data", b"x", b"event", b"a\nb"], "line break"),
        ([b"data", b"x", b"event", b"e" * 129], "longer than"),
        ([b"data", b"\xff"], "utf-8"),
        ([b"data"], "zip"),
    ],
)
def test_malformed_entries_are_skipped_and_counted(
    fields: list[bytes], reason: str
) -> None:
    """
    An entry that cannot be sent is skipped (never half-written), counted,
    and the reader goes on with the next one.
    """
    s = Setup()
    sink = RecordingSink()
    s.hub.subscribe(sink)
    s.read([b"2-0", fields], entry("3-0", "fine"))
    assert datas(sink) == ["fine"]
    assert s.log.skipped == 1
    assert s.hub.last_id == "3-0"


def test_publish_appends_with_approximate_trim() -> None:
    """
    A publish is one XADD with MAXLEN ~ history and the fields data, topic
    and event; the receipt carries the entry id and no delivery count, and
    nothing is delivered until the reader reads it.
    """
    s = Setup()
    sink = RecordingSink()
    s.hub.subscribe(sink)
    receipt = s.hub.publish("hi", event="tick", topic="default")
    assert isinstance(receipt, Deferred)
    args = s.publisher.answer("XADD", b"5-0")
    assert args == (
        "XADD",
        "ssedemo",
        "MAXLEN",
        "~",
        100,
        "*",
        "data",
        "hi",
        "topic",
        "default",
        "event",
        "tick",
    )
    result = receipt.result
    assert (result.id, result.delivered) == ("5-0", None)
    assert sink.writes == []


def test_observer_counts_publishes_once_stored_and_settled_resumes() -> None:
    """
    With Redis, a publish is counted when Redis has stored it, a resume when
    its replay has settled, and fan-outs as the reader delivers.
    """
    s = Setup(newest="2-0")
    s.hub.subscribe(RecordingSink())
    s.hub.publish("hi")
    assert "published" not in s.observer.counts
    s.publisher.answer("XADD", b"3-0")
    assert s.observer.counts["published"] == [()]
    resume(s, "2-0")  # the newest entry read: replayed from memory, at once
    assert s.observer.counts["resumed"] == [(True,)]
    resume(s, "1-5")  # an older one: once its replay has settled
    assert s.observer.counts["resumed"] == [(True,)]
    s.publisher.answer("XRANGE", [entry("1-5"), entry("2-0")])
    assert s.observer.counts["resumed"] == [(True,), (True,)]
    s.read(entry("3-0"))
    assert s.observer.counts["fanned_out"][0][0] == 3
    resume(s, "1-0")
    s.publisher.answer("XRANGE", [entry("1-5")])
    assert s.observer.counts["resumed"] == [(True,), (True,), (False,)]


def test_publish_fails_when_redis_is_unavailable() -> None:
    s = Setup()
    s.publisher.connected = False
    published = s.hub.publish("hi")
    assert isinstance(published, Deferred)
    failures: list[Failure] = []
    published.addErrback(failures.append)
    assert failures[0].check(BrokerUnavailable)


def test_publish_waits_for_replicas() -> None:
    """
    With C{replicas}, a publish is reported stored once C{WAIT} says that
    many replicas have it; with fewer, it fails with L{NotReplicated} (not
    known to be stored), though the master has it.
    """
    s = Setup(replicas=2, replica_timeout=0.25)
    published = s.hub.publish("hi")
    assert isinstance(published, Deferred)
    receipts: list[Any] = []
    published.addBoth(receipts.append)
    s.publisher.answer("XADD", b"5-0")
    assert receipts == []
    args = s.publisher.answer("WAIT", 2)
    assert args == ("WAIT", 2, 250)
    assert [t for a, t in s.publisher.timeouts if a[0] == "WAIT"] == [5.25]
    assert receipts[0].id == "5-0"
    refused = s.hub.publish("there")
    assert isinstance(refused, Deferred)
    failures: list[Failure] = []
    refused.addErrback(failures.append)
    s.publisher.answer("XADD", b"6-0")
    s.publisher.answer("WAIT", 1)
    assert failures[0].check(NotReplicated)
    assert "6-0 reached 1 of 2 replicas within 0.25 s" in failures[0].getErrorMessage()


def test_publish_without_replicas_sends_no_wait() -> None:
    s = Setup()
    s.hub.publish("hi")
    s.publisher.answer("XADD", b"5-0")
    assert s.publisher.waiting("WAIT") == 0


def reconnect_reader(s: Setup) -> None:
    """
    Lose the reader's connection and make it again (as after a failover).
    """
    connected: Deferred[None] = Deferred()
    s.reader.when_connected = lambda: connected  # type: ignore[method-assign]
    s.reader.connected = False
    s.reader.answer("XREAD", BrokerUnavailable("lost"))
    s.reader.connected = True
    s.reader.generation += 1
    connected.callback(None)


def test_reconnected_reader_that_finds_its_last_entry_reads_on() -> None:
    s = Setup(newest="2-0")
    live = RecordingSink()
    s.hub.subscribe(live)
    s.read(entry("3-0"))
    s.reader.answer("XRANGE", [entry("1-0")])
    reconnect_reader(s)
    args = s.reader.answer("XREVRANGE", [entry("3-0")])
    assert args == ("XREVRANGE", "ssedemo", "3-0", "-", "COUNT", 1)
    s.read(entry("4-0"))
    assert ids(live) == ["3-0", "4-0"]


@pytest.mark.parametrize(
    "found,reads_after",
    [([entry("2-5")], "2-5"), ([], "0-0")],
)
def test_entries_lost_in_a_failover_are_a_resync_not_a_gap(
    found: list[Any], reads_after: str
) -> None:
    """
    When the reader, on its new connection (to a new master), does not
    find the last entry it delivered, the entry was lost with the old
    master: streams (and replays under way) get a resync whose id exists
    on the new master, and reading goes on after the newest entry before
    the lost one, so that entries the new master wrote with lower ids than
    the lost one are not skipped.
    """
    s = Setup(newest="2-0")
    live = RecordingSink()
    s.hub.subscribe(live)
    s.read(entry("3-0"))
    s.reader.answer("XRANGE", [entry("1-0")])
    pending = resume(s, "3-0")
    reconnect_reader(s)
    s.reader.answer("XREVRANGE", found)
    events = live.parsed().events
    assert (events[-1].type, events[-1].data) == ("resync", '{"lastEventId": "3-0"}')
    assert events[-1].last_event_id == (reads_after if found else "")
    assert [e.type for e in pending.parsed().events] == ["resync"]
    s.reader.answer("XRANGE", [])
    [args] = [a for a, d in s.reader.sent if a[0] == "XREAD" and not d.called]
    assert args[-1] == reads_after
    s.reader.answer("XREAD", xread(entry("2-7")))
    assert ids(live)[-1] == "2-7"
    assert s.log.last_id == "2-7"


def resume(s: Setup, after: str, topics: tuple[str, ...] = ("default",)) -> Any:
    sink = RecordingSink()
    s.hub.subscribe(sink, topics, after)
    return sink


def test_reader_behind_the_replay() -> None:
    """
    The replay returns entries the reader has not read yet: they are written
    once, and the stream joins the fan-out only once the reader has passed
    them, so it gets each of them, and the next one, exactly once.
    """
    s = Setup(newest="1-0")
    sink = resume(s, "0-5")
    answer = [entry("0-5"), entry("1-0"), entry("2-0"), entry("3-0")]
    assert s.publisher.answer("XRANGE", answer)[2] == "0-5"
    assert ids(sink) == ["1-0", "2-0", "3-0"]
    s.read(entry("2-0"))
    s.read(entry("3-0"), entry("4-0"))
    s.read(entry("5-0"))
    assert ids(sink) == ["1-0", "2-0", "3-0", "4-0", "5-0"]


def test_reader_ahead_of_the_replay() -> None:
    """
    The reader reads on while the replay is fetched: what it read is held
    and written after the replay, without the entries the replay already
    had, and the stream then goes live.
    """
    s = Setup(newest="1-0")
    sink = resume(s, "0-5")
    s.read(entry("2-0"), entry("3-0"))
    assert ids(sink) == []
    s.publisher.answer("XRANGE", [entry("0-5"), entry("1-0"), entry("2-0")])
    assert ids(sink) == ["1-0", "2-0", "3-0"]
    s.read(entry("4-0"))
    assert ids(sink) == ["1-0", "2-0", "3-0", "4-0"]


def test_client_ahead_of_the_reader() -> None:
    """
    A client whose id came from a faster process gets nothing twice: the
    stream waits until this process's reader has passed that id.
    """
    s = Setup(newest="1-0")
    sink = resume(s, "3-0")
    s.publisher.answer("XRANGE", [entry("3-0")])
    s.read(entry("2-0"))
    s.read(entry("3-0"))
    s.read(entry("4-0"))
    assert ids(sink) == ["4-0"]
    assert len(s.hub) == 1


def test_replay_filters_topics_and_skips_malformed() -> None:
    s = Setup(newest="4-0")
    sink = resume(s, "1-0", ("a",))
    s.publisher.answer(
        "XRANGE",
        [
            entry("1-0"),
            entry("2-0", topic="b"),
            [b"3-0", [b"x", b"y"]],
            entry("4-0", topic="a"),
        ],
    )
    assert ids(sink) == ["4-0"]
    assert s.log.skipped == 0
    s.read(entry("5-0", topic="a"))
    assert ids(sink) == ["4-0", "5-0"]


def test_long_replay_is_fetched_in_pages() -> None:
    s = Setup(newest=f"{READ_COUNT}-0")
    sink = resume(s, "0-1")
    first = [entry("0-1")] + [entry(f"{n}-0") for n in range(1, READ_COUNT)]
    s.publisher.answer("XRANGE", first)
    args = s.publisher.answer("XRANGE", [entry(f"{READ_COUNT}-0")])
    assert args[2] == f"({READ_COUNT - 1}-0"
    assert len(ids(sink)) == READ_COUNT
    s.read(entry(f"{READ_COUNT + 1}-0"))
    assert ids(sink)[-1] == f"{READ_COUNT + 1}-0"


@pytest.mark.parametrize(
    "after,stream",
    [
        ("not-an-id", None),
        ("1-0", [entry("2-0")]),
        ("9-0", []),
    ],
)
def test_unknown_or_trimmed_id_gets_resync(after: str, stream: Any) -> None:
    """
    An id that is not in the stream (trimmed, from another stream, or not an
    id at all) gets one resync event whose id is the last one read, then
    the live stream.
    """
    s = Setup(newest="2-0")
    sink = resume(s, after)
    if stream is not None:
        s.publisher.answer("XRANGE", stream)
    events = sink.parsed().events
    assert [(e.type, e.last_event_id) for e in events] == [("resync", "2-0")]
    s.read(entry("3-0"))
    assert ids(sink) == ["2-0", "3-0"]


RETRY = b"retry: 4321\n\n"


class HeldSetup(Setup):
    """
    A L{Setup} whose hub ends the streams it cannot serve with L{RETRY},
    whose publishing connection reconnects when the test says, and whose
    reader has not read where the stream ends until the test says.
    """

    def __init__(self) -> None:
        self.publisher = FakeConnection()
        self.reader = FakeConnection()
        self.clock = Clock()
        self.log = RedisLog(self.publisher, self.reader, self.clock, "ssedemo", 100)  # type: ignore[arg-type]
        self.observer = CountingObserver()
        self.hub = Hub(self.clock, self.log, unavailable=lambda: RETRY)  # type: ignore[arg-type]
        self.log.feed(self.hub)
        self.reconnected: Deferred[None] = Deferred()
        self.publisher.when_connected = lambda: self.reconnected  # type: ignore[method-assign]
        self.log.startService()

    def positioned(self, newest: str) -> None:
        self.reader.answer("XREVRANGE", [entry(newest)])


def test_resume_before_the_first_read_is_held_then_replayed() -> None:
    """
    A client that resumes before the reader knows where the stream ends is
    neither replayed nor told to resync: it is held, then replayed exactly.
    """
    s = HeldSetup()
    sink = resume(s, "1-0")
    assert s.publisher.waiting("XRANGE") == 0 and sink.parsed().events == []
    s.positioned("3-0")
    s.publisher.answer("XRANGE", [entry("1-0"), entry("2-0"), entry("3-0")])
    s.read(entry("4-0"))
    assert ids(sink) == ["2-0", "3-0", "4-0"]


def test_new_stream_before_the_first_read_is_told_to_retry() -> None:
    """
    A new stream before the reader knows where the stream ends could miss
    events appended meanwhile: it is told to come back.
    """
    s = HeldSetup()
    sink = RecordingSink()
    s.hub.subscribe(sink)
    assert sink.closed_with == RETRY and len(s.hub) == 0
    s.positioned("3-0")
    later = RecordingSink()
    s.hub.subscribe(later)
    s.read(entry("4-0"))
    assert ids(later) == ["4-0"]


def test_snapshot_stream_before_the_first_read_is_told_to_retry() -> None:
    """
    A snapshot stream is a new stream: before the reader knows where the
    stream ends it is told to come back, and no snapshot is read.
    """
    s = HeldSetup()
    sink = RecordingSink()
    s.hub.subscribe(sink, snapshot=True)
    assert sink.closed_with == RETRY and len(s.hub) == 0
    assert s.publisher.waiting("EVALSHA") == 0


def test_replay_while_redis_is_unreachable_waits_for_it() -> None:
    """
    A replay that fails because Redis went away is held until Redis is
    back, then replayed from where it was, not answered with resync.
    """
    s = HeldSetup()
    s.positioned("2-0")
    sink = resume(s, "1-0")
    s.publisher.connected = False
    s.publisher.answer("XRANGE", BrokerUnavailable("lost"))
    s.clock.advance(1.0)
    assert sink.parsed().events == [] and len(s.hub) == 1
    s.publisher.connected = True
    s.reconnected.callback(None)
    s.publisher.answer("XRANGE", [entry("1-0"), entry("2-0")])
    s.read(entry("3-0"))
    assert ids(sink) == ["2-0", "3-0"]
    assert sink.closed_with is None


def test_held_too_long_is_told_to_retry() -> None:
    """
    A stream held longer than the hold time-out gets the jittered retry
    answer and is forgotten; one that resumes later is replayed.
    """
    s = HeldSetup()
    s.positioned("2-0")
    s.publisher.connected = False
    sink = resume(s, "1-0")
    s.clock.advance(HOLD_TIMEOUT - 0.1)
    assert sink.closed_with is None
    s.clock.advance(0.1)
    assert sink.closed_with == RETRY and len(s.hub) == 0


def test_leaving_while_held_cancels_the_wait() -> None:
    s = HeldSetup()
    s.positioned("2-0")
    s.publisher.connected = False
    sink = resume(s, "1-0")
    s.hub.unsubscribe(sink)
    s.clock.advance(HOLD_TIMEOUT)
    assert sink.closed_with is None and len(s.hub) == 0


def test_stream_closed_during_replay_is_forgotten() -> None:
    """
    A client that leaves while its replay is pending is not subscribed when
    the replay comes back.
    """
    s = Setup(newest="2-0")
    sink = resume(s, "1-0")
    assert len(s.hub) == 1
    s.hub.unsubscribe(sink)
    assert len(s.hub) == 0
    s.publisher.answer("XRANGE", [entry("1-0"), entry("2-0")])
    s.read(entry("3-0"))
    assert sink.writes == []
    assert len(s.hub) == 0


class LeavingSink(RecordingSink):
    """
    A stream that is dropped by its first write, as a slow client is.
    """

    hub: Hub

    def write(self, data: bytes) -> None:
        super().write(data)
        self.hub.unsubscribe(self)


def test_stream_dropped_by_a_replayed_write_is_forgotten() -> None:
    s = Setup(newest="3-0")
    sink = LeavingSink()
    sink.hub = s.hub
    s.hub.subscribe(sink, ["default"], "1-0")
    s.publisher.answer("XRANGE", [entry("1-0"), entry("2-0"), entry("3-0")])
    s.read(entry("4-0"))
    assert len(s.hub) == 0
    assert ids(sink)[0] == "2-0"


def test_streams_still_resuming_get_keepalives() -> None:
    """
    A stream that waits for this process's reader to pass its client's id
    (here, while the reader is slow) still gets keep-alive comments.
    """
    s = Setup(newest="1-0")
    sink = resume(s, "3-0")
    s.publisher.answer("XRANGE", [entry("3-0")])
    s.clock.advance(15)
    assert s.hub.send_keepalives(15) == 1
    assert sink.parsed().comments == [""]
    assert s.hub.send_keepalives(15) == 0
    s.read(entry("3-0"), entry("4-0"))
    assert ids(sink) == ["4-0"]


def test_stop_ends_streams_still_resuming() -> None:
    """
    A server that stops ends the streams whose replay is still pending too.
    """
    s = Setup(newest="2-0")
    sink = resume(s, "1-0")
    s.hub.close_all()
    assert sink.closed_with == b""
    assert len(s.hub) == 0
    s.publisher.answer("XRANGE", [entry("1-0"), entry("2-0")])
    assert len(s.hub) == 0


def test_trimmed_before_read_tells_streams_to_resync() -> None:
    """
    When the stream's oldest entry is newer than the last entry read before
    the previous read, entries may have been trimmed unread: every stream,
    pending replays included, gets a resync, and reading goes on.
    """
    s = Setup(newest="2-0")
    live = RecordingSink()
    s.hub.subscribe(live)
    pending = resume(s, "1-5")
    s.read(entry("3-0"))
    s.read(oldest="9-0")
    assert [(e.type, e.data, e.last_event_id) for e in live.parsed().events] == [
        ("message", "3-0", "3-0"),
        ("resync", '{"lastEventId": "2-0"}', "3-0"),
    ]
    assert [e.type for e in pending.parsed().events] == ["resync"]
    assert ids(resume(s, "3-0")) == []  # what was read before is forgotten
    assert s.publisher.sent[-1][0][0] == "XRANGE"
    s.read(entry("9-0"), oldest="9-0")
    assert ids(live)[-1] == "9-0"
    assert ids(pending)[-1] == "9-0"


def test_a_replay_from_memory_is_not_given_again_once_entries_were_trimmed() -> None:
    """
    Clients resuming after the same recent entry get the same replay from
    memory; once entries turn out trimmed unread, the next such client is
    replayed from Redis instead, not from what was kept.
    """
    s = Setup(newest="2-0")
    s.read(entry("3-0"))
    assert ids(resume(s, "2-0")) == ["3-0"]
    sent = len(s.publisher.sent)
    assert ids(resume(s, "2-0")) == ["3-0"]
    assert len(s.publisher.sent) == sent  # from memory, both
    s.read(oldest="9-0")
    again = resume(s, "2-0")
    assert s.publisher.sent[-1][0][0] == "XRANGE"
    assert [e.type for e in again.parsed().events] == []


def test_reconnect_reads_on_from_the_last_entry() -> None:
    """
    After the reader's connection fails, it waits for the next connection
    and reads on from the last entry it read.
    """
    s = Setup(newest="2-0")
    s.read(entry("3-0"))
    connected: Deferred[None] = Deferred()
    s.reader.when_connected = lambda: connected  # type: ignore[method-assign]
    s.reader.connected = False
    s.reader.answer("XREAD", BrokerUnavailable("lost"))
    s.reader.connected = True
    connected.callback(None)
    [args] = [a for a, d in s.reader.sent if a[0] == "XREAD" and not d.called]
    assert args[-1] == "3-0"


def test_refused_read_is_retried_later() -> None:
    s = Setup(newest="2-0")
    s.reader.answer("XRANGE", [])
    s.reader.answer("XREAD", RedisError("LOADING"))
    assert s.reader.waiting("XREAD") == 0
    s.clock.advance(1.0)
    assert s.reader.waiting("XREAD") == 1


def test_empty_stream_at_start() -> None:
    """
    Reading an empty stream starts at its beginning, and the first entries
    are no reason to resync.
    """
    s = Setup(newest=None)
    sink = RecordingSink()
    s.hub.subscribe(sink)
    assert s.hub.last_id is None
    s.read(entry("5-0"))
    s.read(oldest="5-0")
    assert [e.type for e in sink.parsed().events] == ["message"]


def test_available_needs_both_connections() -> None:
    s = Setup()
    assert s.log.available
    s.reader.connected = False
    assert not s.log.available


def test_stop_closes_both_connections() -> None:
    s = Setup()
    s.log.stopService()
    assert s.reader.waiting("XREAD") == 0


@pytest.mark.parametrize(
    "text,parsed",
    [
        ("1-0", (1, 0)),
        ("1732981234567-12", (1732981234567, 12)),
        ("1", None),
        ("a-1", None),
        ("-1", None),
    ],
)
def test_parse_entry_id(text: str, parsed: Any) -> None:
    assert parse_entry_id(text) == parsed


def test_resume_after_a_recent_entry_is_replayed_from_memory() -> None:
    """
    A client that resumes after one of the newest entries the reader has
    read (such as every client after a restart) is replayed at once, from
    the entries kept, for its topics only, and joins the fan-out: no round
    trip to Redis, nothing missed or doubled after.
    """
    s = Setup(newest="1-0")
    s.read(entry("2-0", topic="a"), entry("3-0", topic="b"), entry("4-0", topic="a"))
    sent = len(s.publisher.sent)
    sink = resume(s, "2-0", ("a",))
    assert len(s.publisher.sent) == sent
    assert ids(sink) == ["4-0"]
    s.read(entry("5-0", topic="a"))
    assert ids(sink) == ["4-0", "5-0"]


def test_recent_entries_are_those_the_stream_keeps() -> None:
    """
    Only as many entries as C{--history} are replayed from memory: a resume
    after an older one is Redis's to answer (a resync if it was trimmed), as
    on any other process.
    """
    reader = FakeConnection()
    log = RedisLog(FakeConnection(), reader, Clock(), "ssedemo", 2)  # type: ignore[arg-type]
    log.startService()
    reader.answer("XREVRANGE", [entry("3-0"), entry("2-0"), entry("1-0")])
    written: list[bytes] = []
    assert log.replay("2-0", {"default"}, written.append) is True
    assert [e.last_event_id for e in parse(b"".join(written)).events] == ["3-0"]
    assert isinstance(log.replay("1-0", {"default"}, written.append), Deferred)
