"""
Tests for live state in the hub and the in-memory log: rewind on first
connect, retained values per key and the snapshot a stream starts with.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from sse_twisted.fanout import choose_fanout
from sse_twisted.hub import Hub
from sse_twisted.log import MemoryLog, Rewind, Snapshot
from sse_twisted.retained import RetainedValues, TooManyKeys, is_key
from sse_twisted.testing import RecordingSink


def make_hub(history: int = 1000, max_keys: int = 10_000) -> tuple[Hub, Clock]:
    clock = Clock()
    log = MemoryLog(history, instance="t", max_keys=max_keys, clock=clock)
    return Hub(clock, log, groups=choose_fanout().groups), clock


def seen(sink: RecordingSink) -> list[tuple[str, str, str]]:
    return [(e.type, e.data, e.last_event_id) for e in sink.parsed().events]


def subscribed(hub: Hub, *topics: str, **start: object) -> RecordingSink:
    sink = RecordingSink()
    hub.subscribe(sink, topics or ("default",), **start)  # type: ignore[arg-type]
    return sink


# Rewind


def test_rewind_count_gives_the_last_events_of_its_topics_then_live() -> None:
    """
    C{rewind=N} starts with the last N events of the stream's topics, all
    topics together in log order, then live events.
    """
    hub, _ = make_hub()
    for n in range(5):
        hub.publish(f"a{n}", topic="a")
        hub.publish(f"b{n}", topic="b")
        hub.publish(f"c{n}", topic="c")
    sink = subscribed(hub, "a", "b", rewind=Rewind(count=3))
    hub.publish("a5", topic="a")
    hub.publish("c5", topic="c")
    assert seen(sink) == [
        ("message", "b3", "t-11"),
        ("message", "a4", "t-13"),
        ("message", "b4", "t-14"),
        ("message", "a5", "t-16"),
    ]


def test_rewind_count_beyond_the_history_gives_what_is_kept() -> None:
    hub, _ = make_hub(history=3)
    for n in range(5):
        hub.publish(f"e{n}")
    assert [e[1] for e in seen(subscribed(hub, rewind=Rewind(count=100)))] == [
        "e2",
        "e3",
        "e4",
    ]


def test_rewind_on_an_empty_log_gives_live_events_only() -> None:
    hub, _ = make_hub()
    sink = subscribed(hub, rewind=Rewind(count=10))
    hub.publish("first")
    assert seen(sink) == [("message", "first", "t-1")]


def test_rewind_by_time_counts_from_when_each_event_was_stored() -> None:
    """
    C{rewind=<n>s} gives the events stored in the last n seconds.
    """
    hub, clock = make_hub()
    hub.publish("old")
    clock.advance(50)
    hub.publish("edge")
    clock.advance(10)
    hub.publish("new")
    clock.advance(1)
    assert [e[1] for e in seen(subscribed(hub, rewind=Rewind(seconds=11)))] == [
        "edge",
        "new",
    ]
    assert seen(subscribed(hub, rewind=Rewind(seconds=1))) == [
        ("message", "new", "t-3")
    ]
    clock.advance(3600)
    assert seen(subscribed(hub, rewind=Rewind(seconds=3600))) == []


def test_rewind_is_ignored_when_resuming() -> None:
    hub, _ = make_hub()
    for n in range(5):
        hub.publish(f"e{n}")
    sink = subscribed(hub, last_event_id="t-4", rewind=Rewind(count=3))
    assert [e[1] for e in seen(sink)] == ["e4"]


# Retained values and snapshots


def test_snapshot_gives_retained_values_in_id_order_then_its_position() -> None:
    """
    A snapshot is each key's newest event on the stream's topics, as
    published (id, type, data) in id order, then a C{snapshot} event whose
    id is the newest id of the whole log; live events follow.
    """
    hub, _ = make_hub()
    hub.publish("100", topic="prices", key="AAPL", event="price")
    hub.publish("200", topic="prices", key="MSFT")
    hub.publish("101", topic="prices", key="AAPL", event="price")
    hub.publish("x", topic="prices")
    hub.publish("other", topic="news", key="AAPL")
    sink = subscribed(hub, "prices", snapshot=True)
    hub.publish("201", topic="prices", key="MSFT")
    assert seen(sink) == [
        ("message", "200", "t-2"),
        ("price", "101", "t-3"),
        ("snapshot", '{"count": 2}', "t-5"),
        ("message", "201", "t-6"),
    ]


def test_snapshot_of_an_empty_log_has_an_empty_position() -> None:
    hub, _ = make_hub()
    sink = subscribed(hub, "prices", snapshot=True)
    assert seen(sink) == [("snapshot", '{"count": 0}', "")]
    assert b"id: \n" in sink.writes[0]


def test_snapshot_merges_topics_in_id_order() -> None:
    hub, _ = make_hub()
    hub.publish("a1", topic="a", key="k")
    hub.publish("b1", topic="b", key="k")
    hub.publish("a2", topic="a", key="j")
    hub.publish("b2", topic="b", key="k")
    sink = subscribed(hub, "b", "a", snapshot=True)
    assert [e[1] for e in seen(sink)] == ["a1", "a2", "b2", '{"count": 3}']


def test_deleted_values_leave_the_snapshot_and_the_event_is_delivered() -> None:
    """
    Data C{null} with a key deletes the retained value; the event itself
    is delivered as usual, and deleting a key without value is delivered
    too.
    """
    hub, _ = make_hub()
    live = subscribed(hub, "prices")
    hub.publish("1", topic="prices", key="A")
    hub.publish("2", topic="prices", key="B")
    assert hub.publish("null", topic="prices", key="A").delivered == 1
    assert hub.publish("null", topic="prices", key="never").delivered == 1
    assert [e[1] for e in seen(live)] == ["1", "2", "null", "null"]
    assert seen(subscribed(hub, "prices", snapshot=True)) == [
        ("message", "2", "t-2"),
        ("snapshot", '{"count": 1}', "t-4"),
    ]


def test_retained_values_outlive_the_history() -> None:
    """
    Trimming the history never drops a retained value.
    """
    hub, _ = make_hub(history=2)
    hub.publish("kept", topic="prices", key="A")
    for n in range(10):
        hub.publish(str(n), topic="prices")
    assert seen(subscribed(hub, "prices", snapshot=True)) == [
        ("message", "kept", "t-1"),
        ("snapshot", '{"count": 1}', "t-11"),
    ]


def test_retained_values_work_without_history() -> None:
    hub, _ = make_hub(history=0)
    hub.publish("v", topic="prices", key="A")
    assert [e[1] for e in seen(subscribed(hub, "prices", snapshot=True))] == [
        "v",
        '{"count": 1}',
    ]


class LateSnapshots(MemoryLog):
    """
    A log that reads a snapshot some time after it is asked for, as a
    shared log does (a round trip to Redis): when L{read} is called.
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__(instance="t", clock=clock)
        self.asked: list[tuple[Collection[str], Deferred[Snapshot]]] = []

    def snapshot(self, topics: Collection[str]) -> Deferred[Snapshot]:  # type: ignore[override]
        read: Deferred[Snapshot] = Deferred()
        self.asked.append((topics, read))
        return read

    def read(self) -> None:
        for topics, read in self.asked:
            read.callback(super().snapshot(topics))
        self.asked.clear()


def late_hub() -> tuple[Hub, LateSnapshots]:
    """
    @return: A hub on a log that reads snapshots late, and that log.
    """
    clock = Clock()
    log = LateSnapshots(clock)
    return Hub(clock, log, groups=choose_fanout().groups), log


def test_events_published_before_a_late_snapshot_are_the_streams() -> None:
    """
    When the snapshot is read after the stream opened, the events of its
    topics published in between come before the C{snapshot} event: those
    without a key as they are, those with one as the values they left.
    Then live events follow, none missed or repeated.
    """
    hub, log = late_hub()
    hub.publish("before", topic="prices", key="A")
    sink = subscribed(hub, "prices", snapshot=True)
    hub.publish("news", topic="prices")
    hub.publish("other topic", topic="weather")
    hub.publish("A again", topic="prices", key="A")
    hub.publish("B", topic="prices", key="B")
    log.read()
    hub.publish("live", topic="prices")
    assert seen(sink) == [
        ("message", "A again", "t-4"),
        ("message", "B", "t-5"),
        ("message", "news", "t-2"),
        ("snapshot", '{"count": 2}', "t-5"),
        ("message", "live", "t-6"),
    ]


def test_a_late_snapshot_of_an_empty_log_gives_the_first_events() -> None:
    """
    The log was empty when the stream opened: the events published before
    its snapshot was read are the stream's all the same.
    """
    hub, log = late_hub()
    sink = subscribed(hub, "prices", snapshot=True)
    hub.publish("first", topic="prices")
    log.read()
    assert seen(sink) == [
        ("message", "first", "t-1"),
        ("snapshot", '{"count": 0}', "t-1"),
    ]


def test_between_gives_the_events_of_the_topics_after_and_up_to() -> None:
    """
    C{between} gives the events of the topics after a position and up to
    an id, as far as the history holds them, keys included.
    """
    log = MemoryLog(history=3, instance="t")
    for n in range(1, 6):
        key = "k" if n == 3 else None
        log.append(str(n), None, "odd" if n % 2 else "even", key=key)
    assert [r.id for r in log.between("t-2", "t-4", {"odd", "even"})] == ["t-3", "t-4"]
    assert [(r.id, r.key) for r in log.between("", "t-5", {"odd"})] == [
        ("t-3", "k"),
        ("t-5", None),
    ]
    assert log.between("t-4", "t-4", {"even"}) == []
    assert log.between("u-1", "t-5", {"odd"}) == []


def test_resume_with_a_known_id_replays_without_snapshot() -> None:
    hub, _ = make_hub()
    hub.publish("1", topic="prices", key="A")
    hub.publish("2", topic="prices", key="B")
    sink = subscribed(hub, "prices", last_event_id="t-1", snapshot=True)
    assert seen(sink) == [("message", "2", "t-2")]


def test_resume_with_an_unknown_id_gets_resync_then_the_snapshot() -> None:
    hub, _ = make_hub(history=1)
    hub.publish("1", topic="prices", key="A")
    hub.publish("2", topic="prices", key="B")
    sink = subscribed(hub, "prices", last_event_id="t-0x", snapshot=True)
    hub.publish("3", topic="prices", key="A")
    assert seen(sink) == [
        ("resync", json.dumps({"lastEventId": "t-0x"}), "t-2"),
        ("message", "1", "t-1"),
        ("message", "2", "t-2"),
        ("snapshot", '{"count": 2}', "t-2"),
        ("message", "3", "t-3"),
    ]


def test_resume_without_snapshot_behaves_as_before() -> None:
    hub, _ = make_hub(history=1)
    hub.publish("1", topic="prices", key="A")
    hub.publish("2", topic="prices", key="B")
    hub.publish("3", topic="prices", key="B")
    sink = subscribed(hub, "prices", last_event_id="t-1")
    assert [e[0] for e in seen(sink)] == ["resync"]


def test_a_new_key_beyond_max_keys_is_refused_updates_and_deletes_pass() -> None:
    """
    At C{max_keys} values, a new key is refused and nothing is published;
    updates and deletions pass, and a deletion frees a place.
    """
    hub, _ = make_hub(max_keys=2)
    live = subscribed(hub, "a", "b")
    hub.publish("1", topic="a", key="x")
    hub.publish("2", topic="b", key="x")
    with pytest.raises(TooManyKeys):
        hub.publish("3", topic="a", key="y")
    assert hub.last_id == "t-2"
    hub.publish("4", topic="a", key="x")
    hub.publish("null", topic="a", key="y")
    hub.publish("null", topic="b", key="x")
    hub.publish("5", topic="a", key="y")
    assert [e[1] for e in seen(live)] == ["1", "2", "4", "null", "null", "5"]


@pytest.mark.parametrize(
    "key,valid",
    [
        ("AAPL", True),
        ("k" * 128, True),
        ("ü/€ x", True),
        ("", False),
        ("k" * 129, False),
        ("a\nb", False),
        ("a\rb", False),
        ("a\x00b", False),
        (5, False),
        (None, False),
    ],
)
def test_keys(key: object, valid: bool) -> None:
    assert is_key(key) is valid


def test_retained_values_count_and_refuse_a_negative_limit() -> None:
    with pytest.raises(ValueError):
        RetainedValues(-1)


# The race: streams start while publishers publish.


Published = list[tuple[str, str, str]]
"""The log as the publishers saw it: id, topic and key of each event."""


def _check_no_gap(log: Published, sink: RecordingSink, topics: set[str]) -> None:
    """
    A stream's ids are strictly increasing and, from where it went live
    (its first event, or the position its snapshot named), exactly the
    log's ids on its topics: nothing missing, nothing twice. A snapshot
    holds each key's newest event up to its position.
    """
    events = sink.parsed().events
    ids = [e.last_event_id for e in events if e.type == "message"]
    assert [int(i[2:]) for i in ids] == sorted({int(i[2:]) for i in ids})
    wanted = [i for i, topic, _ in log if topic in topics]
    marks = [e.last_event_id for e in events if e.type == "snapshot"]
    if marks:
        [position] = marks
        split = next(n for n, e in enumerate(events) if e.type == "snapshot")
        values = [e.last_event_id for e in events[:split]]
        upto = [entry for entry in log if int(entry[0][2:]) <= int(position[2:])]
        newest = {(topic, key): i for i, topic, key in upto if topic in topics}
        assert values == sorted(newest.values(), key=lambda i: int(i[2:]))
        live = [e.last_event_id for e in events[split + 1 :]]
        assert live == [i for i in wanted if int(i[2:]) > int(position[2:])]
        assert json.loads(events[split].data) == {"count": len(values)}
    elif ids:
        assert ids == wanted[wanted.index(ids[0]) :]


@pytest.mark.parametrize(
    "start",
    [{"rewind": Rewind(count=5)}, {"rewind": Rewind(seconds=2)}, {"snapshot": True}],
)
def test_streams_starting_among_publishes_miss_and_repeat_nothing(
    start: dict[str, object],
) -> None:
    """
    Hundreds of streams start (rewind or snapshot) between the events of
    several publishers; each sees the log's events of its topics from its
    start on, each once, in order.
    """
    hub, clock = make_hub(history=50)
    rng = random.Random(7)
    topics = ["a", "b", "c"]
    log: Published = []
    streams: list[tuple[RecordingSink, set[str]]] = []
    for _ in range(300):
        for _ in range(rng.randrange(3)):
            topic = rng.choice(topics)
            key = rng.choice("pqr")
            receipt = hub.publish("x", topic=topic, key=key)
            log.append((receipt.id, topic, key))  # type: ignore[union-attr]
        clock.advance(0.1)
        wanted = set(rng.sample(topics, 2))
        streams.append((subscribed(hub, *sorted(wanted), **start), wanted))
    for sink, wanted in streams:
        _check_no_gap(log, sink, wanted)
