"""
Tests for L{sse_twisted.hub.Hub}: registry, fan-out, history and resume.
"""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from sse_twisted.event import InvalidEventField
from sse_twisted.fanout import choose_fanout
from sse_twisted.hub import RESYNC_EVENT, Hub
from sse_twisted.log import MemoryLog, ReplayMemo
from sse_twisted.testing import RecordingSink, parse


class FakeSink(RecordingSink):
    def events(self) -> list[tuple[str, str, str]]:
        return [(e.type, e.data, e.last_event_id) for e in self.parsed().events]


class BrokenSink(FakeSink):
    def write(self, data: bytes) -> None:
        raise ConnectionError("gone")


def make_hub(history: int = 1000) -> tuple[Hub, Clock]:
    clock = Clock()
    hub = Hub(clock, MemoryLog(history, instance="t"), groups=choose_fanout().groups)
    return hub, clock


def test_publish_reaches_every_subscriber_with_one_shared_bytes() -> None:
    """
    One publish is written to every open stream of its topic, as the very
    same C{bytes} object: encoded once, not per recipient.
    """
    hub, _ = make_hub()
    sinks = [FakeSink() for _ in range(3)]
    for sink in sinks:
        hub.subscribe(sink)
    receipt = hub.publish("hello")
    assert receipt.delivered == 3
    assert all(sink.writes[0] is sinks[0].writes[0] for sink in sinks)
    assert sinks[0].events() == [("message", "hello", "t-1")]


def test_ids_increase_strictly() -> None:
    """
    Each published event gets the next id.
    """
    hub, _ = make_hub()
    ids = [hub.publish(str(n)).id for n in range(3)]
    assert ids == ["t-1", "t-2", "t-3"]
    assert hub.last_id == "t-3"


def test_unsubscribe_shrinks_the_registry() -> None:
    """
    A stream that leaves gets nothing more, and the count of open streams
    drops; leaving twice is harmless.
    """
    hub, _ = make_hub()
    stays, leaves = FakeSink(), FakeSink()
    hub.subscribe(stays)
    hub.subscribe(leaves)
    assert len(hub) == 2
    hub.unsubscribe(leaves)
    hub.unsubscribe(leaves)
    assert len(hub) == 1
    assert hub.publish("x").delivered == 1
    assert leaves.writes == []


def test_opens_and_closes_are_logged_once_per_turn() -> None:
    """
    Streams opening and closing are counted into one log line at the end
    of the event loop's turn, with the number still open.
    """
    hub, clock = make_hub()
    sinks = [FakeSink() for _ in range(3)]
    with capturedLogs() as events:
        for sink in sinks:
            hub.subscribe(sink)
        hub.unsubscribe(sinks[0])
        assert events == []
        clock.advance(0)
        hub.unsubscribe(sinks[1])
        clock.advance(0)
    assert [formatEvent(e) for e in events] == [
        "streams opened: 3, closed: 1; 2 open",
        "streams opened: 0, closed: 1; 1 open",
    ]


def test_resyncs_are_logged_in_sum() -> None:
    """
    Streams told to resync (after a restart with an in-memory log: every
    client at once) make one log line a turn, a second apart at most, not
    one line each.
    """
    hub, clock = make_hub()
    with capturedLogs() as events:
        for n in range(500):
            hub.subscribe(FakeSink(), last_event_id=f"old-{n}")
        clock.advance(0)
        hub.subscribe(FakeSink(), last_event_id="older")
        clock.advance(1)
    lines = [formatEvent(e) for e in events if "resume" in formatEvent(e)]
    assert lines == [
        "cannot resume 500 streams (the last after old-499): sent resync",
        "cannot resume 1 streams (the last after older): sent resync",
    ]


def test_failing_write_does_not_affect_others() -> None:
    """
    A stream whose write raises is dropped; the others still get the event.
    """
    hub, _ = make_hub()
    broken, healthy = BrokenSink(), FakeSink()
    hub.subscribe(broken)
    hub.subscribe(healthy)
    assert hub.publish("x").delivered == 1
    assert healthy.data() == ["x"]
    assert len(hub) == 1


def test_broadcast_has_no_id_and_is_not_replayed() -> None:
    """
    A passing event (the demo heartbeat) carries no id, so it does not move
    the client's Last-Event-ID, and is not kept for replay.
    """
    hub, _ = make_hub()
    early = FakeSink()
    hub.subscribe(early)
    hub.publish("kept")
    hub.broadcast("passing")
    assert early.events() == [("message", "kept", "t-1"), ("message", "passing", "t-1")]
    late = FakeSink()
    hub.subscribe(late, last_event_id="t-0")
    assert late.data() == ["kept"]


def test_invalid_event_publishes_nothing() -> None:
    """
    An event that cannot be encoded raises and uses up no id.
    """
    hub, _ = make_hub()
    sink = FakeSink()
    hub.subscribe(sink)
    with pytest.raises(InvalidEventField):
        hub.publish("x", event="a\nb")
    assert sink.writes == []
    assert hub.publish("y").id == "t-1"


def test_topics_are_isolated() -> None:
    """
    A stream gets the events of its own topics only, each once even when
    subscribed to several.
    """
    hub, _ = make_hub()
    a, b, ab = FakeSink(), FakeSink(), FakeSink()
    hub.subscribe(a, ["a"])
    hub.subscribe(b, ["b"])
    hub.subscribe(ab, ["a", "b", "a"])
    hub.publish("to a", topic="a")
    hub.publish("to b", topic="b")
    hub.publish("to default")
    assert a.data() == ["to a"]
    assert b.data() == ["to b"]
    assert ab.data() == ["to a", "to b"]


def test_resume_replays_exactly_the_missed_events_then_live() -> None:
    """
    A client resuming after id N gets the events after N, in order, then
    the live ones: no gap and no duplicate.
    """
    hub, _ = make_hub()
    first = FakeSink()
    hub.subscribe(first)
    for n in range(1, 4):
        hub.publish(f"event {n}")
    last_seen = first.events()[0][2]
    hub.unsubscribe(first)
    for n in range(4, 6):
        hub.publish(f"event {n}")
    resumed = FakeSink()
    hub.subscribe(resumed, last_event_id=last_seen)
    hub.publish("event 6")
    assert resumed.data() == [f"event {n}" for n in range(2, 7)]
    assert [e[2] for e in resumed.events()] == [f"t-{n}" for n in range(2, 7)]


def test_a_replay_is_written_in_one_write() -> None:
    """
    The events a resuming client is owed go to its stream in one write (one
    chunk of the response); live events follow one write each.
    """
    hub, _ = make_hub()
    for n in range(1, 6):
        hub.publish(f"event {n}")
    resumed = FakeSink()
    hub.subscribe(resumed, last_event_id="t-1")
    assert len(resumed.writes) == 1
    hub.publish("event 6")
    assert len(resumed.writes) == 2
    assert resumed.data() == [f"event {n}" for n in range(2, 7)]


def test_resumes_after_one_id_get_what_the_log_holds_then() -> None:
    """
    Clients resuming after the same id (as after a restart) each get the
    events after it, of their own topics; one resuming after another event
    is published gets that one too.
    """
    hub, _ = make_hub()
    for n in range(1, 4):
        hub.publish(f"a{n}", topic="a")
        hub.publish(f"b{n}", topic="b")
    early = [FakeSink() for _ in range(3)]
    for sink in early:
        hub.subscribe(sink, ["a"], last_event_id="t-2")
    other = FakeSink()
    hub.subscribe(other, ["b"], last_event_id="t-2")
    hub.publish("a4", topic="a")
    late = FakeSink()
    hub.subscribe(late, ["a"], last_event_id="t-2")
    assert [sink.data() for sink in early] == [["a2", "a3", "a4"]] * 3
    assert other.data() == ["b2", "b3"]
    assert late.data() == ["a2", "a3", "a4"]
    assert late.writes[0] == early[0].writes[0] + early[0].writes[1]


def test_replays_are_kept_while_the_log_stays_where_it_is() -> None:
    """
    L{ReplayMemo} gives back a replay kept at the same log position, for
    the same id and topics; a new position, or L{ReplayMemo.forget}, drops
    them all; it keeps at most L{ReplayMemo.SIZE}.
    """
    memo = ReplayMemo()
    assert memo.find(1, "x-1", ["a"]) is None
    memo.keep(1, "x-1", ["a"], b"wire")
    assert memo.find(1, "x-1", frozenset({"a"})) == b"wire"
    assert memo.find(1, "x-1", ["b"]) is None
    assert memo.find(1, "x-2", ["a"]) is None
    assert memo.find(2, "x-1", ["a"]) is None  # the log moved on
    memo.keep(1, "x-1", ["a"], b"stale")  # made at the old position
    assert memo.find(2, "x-1", ["a"]) is None
    memo.keep(2, "x-1", ["a"], b"new")
    memo.forget()
    assert memo.find(2, "x-1", ["a"]) is None
    for n in range(ReplayMemo.SIZE + 1):
        memo.keep(2, f"x-{n}", ["a"], b"w")
    found = [memo.find(2, f"x-{n}", ["a"]) for n in range(ReplayMemo.SIZE + 1)]
    assert found == [b"w"] * ReplayMemo.SIZE + [None]


def test_writes_that_publish_during_a_replay_are_replayed_again() -> None:
    """
    A stream whose every write publishes an event (up to three) gets each
    of them after the replay, in order, before the live ones.
    """
    hub, _ = make_hub()
    hub.publish("e1")

    class Echo(FakeSink):
        def write(self, data: bytes) -> None:
            super().write(data)
            if len(self.writes) <= 3:
                hub.publish(f"echo {len(self.writes)}")

    sink = Echo()
    hub.subscribe(sink, last_event_id="t-0")
    hub.publish("live")
    assert sink.data() == ["e1", "echo 1", "echo 2", "echo 3", "live"]


def test_event_published_during_replay_is_replayed_in_place() -> None:
    """
    If writing the replay leads to a new event being published (the hub
    does not know what a write does), that event follows the replay: no
    gap, no duplicate.
    """
    hub, _ = make_hub()
    hub.publish("e1")
    hub.publish("e2")

    class PublishingSink(FakeSink):
        def write(self, data: bytes) -> None:
            super().write(data)
            if len(self.writes) == 1:
                hub.publish("during replay")

    sink = PublishingSink()
    hub.subscribe(sink, last_event_id="t-0")
    hub.publish("live")
    assert sink.data() == ["e1", "e2", "during replay", "live"]


def test_resume_respects_topics() -> None:
    """
    Replay holds only the events of the resuming stream's topics.
    """
    hub, _ = make_hub()
    hub.publish("a1", topic="a")
    hub.publish("b1", topic="b")
    hub.publish("a2", topic="a")
    resumed = FakeSink()
    hub.subscribe(resumed, ["a"], last_event_id="t-0")
    assert resumed.data() == ["a1", "a2"]


def test_resume_at_the_latest_id_replays_nothing() -> None:
    """
    A client that missed nothing gets nothing replayed and no resync.
    """
    hub, _ = make_hub()
    hub.publish("x")
    sink = FakeSink()
    hub.subscribe(sink, last_event_id="t-1")
    assert sink.writes == []


@pytest.mark.parametrize(
    "last_event_id",
    ["t-0", "other-5", "t-99", "garbage", "t-", "t-²", "t-" + "9" * 5000],
)
def test_stale_or_unknown_id_gets_a_resync_event(last_event_id: str) -> None:
    """
    When the hub cannot tell what came after the client's id (fell out of
    the history, another server's id, an id from the future, junk), the
    client gets one L{RESYNC_EVENT} carrying its id, whose own id is the
    latest, so that the next reconnect resumes from there.
    """
    hub, _ = make_hub(history=2)
    for n in range(3):
        hub.publish(str(n))
    sink = FakeSink()
    hub.subscribe(sink, last_event_id=last_event_id)
    [(kind, data, event_id)] = sink.events()
    assert kind == RESYNC_EVENT
    assert json.loads(data) == {"lastEventId": last_event_id}
    assert event_id == "t-3"
    hub.publish("live")
    assert sink.data()[-1] == "live"


def test_each_resync_names_its_id_and_the_newest() -> None:
    """
    Streams told to resync one after another each get their own id back
    and the newest id of the moment, whether or not the one before asked
    with the same id, before and after the log moves on.
    """
    hub, _ = make_hub(history=0)

    def resync(after: str) -> tuple[str, str]:
        sink = FakeSink()
        hub.subscribe(sink, last_event_id=after)
        [(kind, data, event_id)] = sink.events()
        assert kind == RESYNC_EVENT
        return json.loads(data)["lastEventId"], event_id

    before = [resync("old-1"), resync("old-1"), resync("old-2")]
    assert before == [("old-1", ""), ("old-1", ""), ("old-2", "")]
    hub.publish("moved on")
    assert [resync("old-2"), resync("old-1")] == [("old-2", "t-1"), ("old-1", "t-1")]


def test_oldest_event_still_in_history_resumes() -> None:
    """
    The boundary: resuming just before the oldest kept event is lossless.
    """
    hub, _ = make_hub(history=2)
    for n in range(1, 4):
        hub.publish(str(n))
    sink = FakeSink()
    hub.subscribe(sink, last_event_id="t-1")
    assert sink.data() == ["2", "3"]


def test_history_zero_turns_resume_off() -> None:
    """
    With no history, any resume that may have missed something gets a
    resync event; resuming at the latest id gets nothing.
    """
    hub, _ = make_hub(history=0)
    hub.publish("1")
    hub.publish("2")
    stale, current = FakeSink(), FakeSink()
    hub.subscribe(stale, last_event_id="t-1")
    hub.subscribe(current, last_event_id="t-2")
    assert [e[0] for e in stale.events()] == [RESYNC_EVENT]
    assert current.writes == []


def test_resync_before_any_event_clears_the_client_id() -> None:
    """
    With nothing published yet (a fresh server), a resync carries an empty
    id, which clears the client's stale id.
    """
    hub, _ = make_hub()
    sink = FakeSink()
    hub.subscribe(sink, last_event_id="old-server-7")
    assert sink.events()[0][2] == ""
    assert sink.writes[0].startswith(b"event: resync\nid: \n")


def test_keepalive_only_for_quiet_streams() -> None:
    """
    A comment goes to streams that have been silent for the idle time, not
    to those that just got an event.
    """
    hub, clock = make_hub()
    quiet, busy = FakeSink(), FakeSink()
    hub.subscribe(quiet, ["quiet"])
    hub.subscribe(busy, ["busy"])
    clock.advance(10)
    hub.publish("x", topic="busy")
    clock.advance(5)
    assert hub.send_keepalives(15) == 1
    assert parse(b"".join(quiet.writes)).comments == [""]
    assert busy.data() == ["x"]
    assert parse(b"".join(busy.writes)).comments == []


def test_topics_without_streams_leave_nothing_behind() -> None:
    """
    Publishing to many topics nobody follows, or following a topic and
    leaving, keeps no per-topic state beyond the bounded history.
    """
    events = MemoryLog(history=10)
    hub = Hub(Clock(), events)
    for n in range(1000):
        hub.publish("x", topic=f"nobody-{n}")
    sink = FakeSink()
    hub.subscribe(sink, ["brief"])
    hub.publish("y", topic="brief")
    hub.unsubscribe(sink)
    assert hub._subscribers == {} and hub._last_delivery == {}
    assert len(events._records) == 10


def test_keepalive_resets_the_silence() -> None:
    """
    After a comment, a stream is quiet again only after another idle time.
    """
    hub, clock = make_hub()
    sink = FakeSink()
    hub.subscribe(sink)
    clock.advance(15)
    assert hub.send_keepalives(15) == 1
    clock.advance(10)
    assert hub.send_keepalives(15) == 0
    clock.advance(5)
    assert hub.send_keepalives(15) == 1


def test_close_all_says_farewell_and_empties_the_registry() -> None:
    """
    Every stream gets its own farewell and is closed; none stays registered.
    """
    hub, _ = make_hub()
    sinks = [FakeSink() for _ in range(3)]
    for sink in sinks:
        hub.subscribe(sink)
    farewells = iter([b"1", b"2", b"3"])
    hub.close_all(lambda: next(farewells))
    assert sorted(sink.closed_with or b"" for sink in sinks) == [b"1", b"2", b"3"]
    assert len(hub) == 0
    assert hub.publish("after").delivered == 0


def test_negative_history_is_refused() -> None:
    with pytest.raises(ValueError):
        MemoryLog(history=-1)
