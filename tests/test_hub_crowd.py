"""
Tests for the hub's hold of live events while a crowd of clients comes back
(L{sse_twisted.hub.Hub}, L{sse_twisted.hub.RETURN_CROWD}).
"""

from __future__ import annotations

import math

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, eventAsJSON, eventFromJSON, formatEvent

from sse_twisted.fanout import choose_fanout
from sse_twisted.hub import RETURN_CROWD, RETURN_HOLD, RETURN_WINDOW, Hub
from sse_twisted.log import MemoryLog
from sse_twisted.testing import RecordingSink


class Sink(RecordingSink):
    def ids(self) -> list[str]:
        return [e.last_event_id for e in self.parsed().events]


def make_hub(crowd_hold: float = RETURN_HOLD) -> tuple[Hub, Clock]:
    clock = Clock()
    clock.advance(1000)
    hub = Hub(
        clock,
        MemoryLog(1000, instance="t"),
        groups=choose_fanout().groups,
        crowd_hold=crowd_hold,
    )
    return hub, clock


def crowd_returns(
    hub: Hub, after: str, topics: tuple[str, ...] = ("default",)
) -> list[Sink]:
    """
    A crowd of clients resumes after C{after}, all at once.
    """
    returning = [Sink() for _ in range(RETURN_CROWD)]
    for sink in returning:
        hub.subscribe(sink, topics, last_event_id=after)
    return returning


def publish_while_a_crowd_returns(hub: Hub) -> tuple[Sink, str]:
    """
    A stream opens and gets t-1; then a crowd comes back after t-1 and t-2
    is published.

    @return: The stream that stayed open, and t-1's id.
    """
    staying = Sink()
    hub.subscribe(staying)
    first = hub.publish("1").id
    crowd_returns(hub, first)
    hub.publish("2")
    return staying, first


def test_live_events_wait_while_a_crowd_comes_back() -> None:
    """
    While clients come back in a crowd, a live event is held: it reaches
    the streams that were open once the crowd has passed, and each stream
    opened meanwhile gets only what its replay did not have, in order.
    """
    hub, clock = make_hub()
    staying = Sink()
    hub.subscribe(staying)
    first = hub.publish("1").id
    returning = crowd_returns(hub, first)
    receipt = hub.publish("2")
    assert receipt.delivered == 1 + RETURN_CROWD
    assert staying.ids() == ["t-1"]
    late = Sink()
    hub.subscribe(late, last_event_id=first)  # replays t-2
    hub.publish("3")
    clock.advance(RETURN_WINDOW * 0.99)
    assert staying.ids() == ["t-1"]  # the crowd came within the window
    clock.advance(RETURN_WINDOW * 0.01)  # a window after: it has passed
    assert staying.ids() == ["t-1", "t-2", "t-3"]
    assert staying.writes[1] == b"".join(staying.writes[1:])  # one write
    assert all(sink.ids() == ["t-2", "t-3"] for sink in returning)
    assert late.ids() == ["t-2", "t-3"]
    hub.publish("4")  # the crowd has passed: at once
    assert {tuple(sink.ids()) for sink in [staying, late, *returning]} == {
        ("t-1", "t-2", "t-3", "t-4"),
        ("t-2", "t-3", "t-4"),
    }


def test_hold_ends_after_the_longest_hold_while_the_crowd_goes_on() -> None:
    """
    A crowd that keeps coming does not hold events for longer than
    L{RETURN_HOLD}.
    """
    hub, clock = make_hub()
    staying, first = publish_while_a_crowd_returns(hub)
    waited = 0.0
    while staying.ids() == ["t-1"] and waited < 2 * RETURN_HOLD:
        clock.advance(RETURN_WINDOW / 2)
        waited += RETURN_WINDOW / 2
        crowd_returns(hub, first)
    assert staying.ids() == ["t-1", "t-2"]
    assert RETURN_HOLD - RETURN_WINDOW <= waited <= RETURN_HOLD + RETURN_WINDOW


def test_a_crowd_passes_a_window_after_its_last_clients() -> None:
    """
    Held events go out once the last L{RETURN_CROWD} clients to resume did
    not all come back within the last L{RETURN_WINDOW}: a crowd that keeps
    coming keeps them held, and they go out as soon as it stops.
    """
    hub, clock = make_hub()
    staying, first = publish_while_a_crowd_returns(hub)
    for _ in range(4):
        clock.advance(RETURN_WINDOW * 0.75)
        crowd_returns(hub, first)
        assert staying.ids() == ["t-1"]
    clock.advance(RETURN_WINDOW * 0.99)
    assert staying.ids() == ["t-1"]
    clock.advance(RETURN_WINDOW * 0.01)
    assert staying.ids() == ["t-1", "t-2"]


def test_clients_resuming_slower_than_a_crowd_hold_nothing() -> None:
    """
    L{RETURN_CROWD} clients resuming over more than L{RETURN_WINDOW} are
    no crowd: events published meanwhile go out at once.
    """
    hub, clock = make_hub()
    staying = Sink()
    hub.subscribe(staying)
    first = hub.publish("1").id
    for _ in range(RETURN_CROWD):
        hub.subscribe(Sink(), last_event_id=first)
        clock.advance(RETURN_WINDOW / (RETURN_CROWD - 1) * 1.01)
    hub.publish("2")
    assert staying.ids() == ["t-1", "t-2"]


def test_new_streams_without_an_id_do_not_hold_events() -> None:
    """
    A ramp of new clients (no C{Last-Event-ID}) is no crowd coming back:
    events go out at once.
    """
    hub, _ = make_hub()
    sinks = [Sink() for _ in range(10 * RETURN_CROWD)]
    for sink in sinks:
        hub.subscribe(sink)
    assert hub.publish("now").delivered == len(sinks)
    assert all(sink.ids() == ["t-1"] for sink in sinks)


def test_held_events_keep_their_order_across_topics() -> None:
    """
    A stream of two topics gets held events in the order they were
    published, whatever their topics.
    """
    hub, clock = make_hub()
    both = Sink()
    hub.subscribe(both, ["a", "b"])
    first = hub.publish("0", topic="a").id
    crowd_returns(hub, first, ("a",))
    for n, topic in enumerate("abba", start=1):
        hub.publish(str(n), topic=topic)
    clock.pump([RETURN_WINDOW] * 4)
    assert both.data() == ["0", "1", "2", "3", "4"]


def test_a_stream_that_leaves_while_events_are_held_is_forgotten() -> None:
    """
    A stream that opens and closes while events are held gets nothing more,
    and nothing of it stays behind.
    """
    hub, clock = make_hub()
    first = hub.publish("1").id
    returning = crowd_returns(hub, first)
    hub.publish("2")
    gone = returning[0]
    hub.unsubscribe(gone)
    clock.pump([RETURN_WINDOW] * 4)
    assert gone.ids() == []
    assert len(hub) == RETURN_CROWD - 1
    assert hub.publish("3").delivered == RETURN_CROWD - 1


def test_close_all_writes_held_events_before_the_farewell() -> None:
    """
    On shutdown, held events are written before each stream's farewell.
    """
    hub, _ = make_hub()
    staying = Sink()
    hub.subscribe(staying)
    first = hub.publish("1").id
    returning = crowd_returns(hub, first)
    hub.publish("2")
    hub.close_all(lambda: b"retry: 5000\n\n")
    assert staying.ids() == ["t-1", "t-2"]
    assert returning[0].ids() == ["t-2"]
    assert staying.closed_with == b"retry: 5000\n\n"


def test_the_hold_is_logged_once_when_it_ends() -> None:
    hub, clock = make_hub()
    first = hub.publish("1").id
    crowd_returns(hub, first)
    with capturedLogs() as events:
        hub.publish("2")
        hub.publish("3")
        clock.pump([RETURN_WINDOW] * 4)
    held = [e for e in events if "held" in formatEvent(e)]
    lines = [formatEvent(e) for e in held]
    assert len(lines) == 1
    # The same line from a worker, whose log reaches its parent as JSON:
    assert formatEvent(eventFromJSON(eventAsJSON(held[0]))) == lines[0]
    assert lines[0].startswith("2 live events held 0.")
    assert lines[0].endswith("s while a crowd of clients came back")


def test_one_held_event_is_logged_in_the_singular() -> None:
    hub, clock = make_hub()
    crowd_returns(hub, hub.publish("1").id)
    with capturedLogs() as events:
        hub.publish("2")
        clock.pump([RETURN_WINDOW] * 4)
    [line] = [formatEvent(e) for e in events if "held" in formatEvent(e)]
    assert line.startswith("1 live event held 0.")


class Deliveries:
    """
    An observer that adds up deliveries, as the metrics do.
    """

    def __init__(self) -> None:
        self.total = 0

    def fanned_out(self, streams: int, seconds: float) -> None:
        self.total += streams

    def __getattr__(self, name: str) -> object:
        return lambda *args: None


def test_held_events_count_one_delivery_per_event_and_stream() -> None:
    """
    Held events written together still count as one delivery each, to the
    streams that were open and to those that opened meanwhile.
    """
    clock = Clock()
    observer = Deliveries()
    hub = Hub(clock, MemoryLog(1000, instance="t"), observer=observer)  # type: ignore[arg-type]
    staying = Sink()
    hub.subscribe(staying)
    first = hub.publish("1").id
    returning = crowd_returns(hub, first)
    hub.publish("2")
    hub.subscribe(Sink(), last_event_id=first)
    hub.publish("3")
    clock.pump([RETURN_WINDOW] * 4)
    # t-1 to one; t-2 and t-3 to staying and the crowd; t-3 to the late one.
    assert observer.total == 1 + 2 * (1 + len(returning)) + 1


def test_no_hold_when_turned_off() -> None:
    """
    With C{crowd_hold=0} (C{--crowd-hold 0}), events go out at once even
    while a crowd comes back.
    """
    hub, _ = make_hub(crowd_hold=0)
    staying, _ = publish_while_a_crowd_returns(hub)
    assert staying.ids() == ["t-1", "t-2"]


def test_a_shorter_hold_ends_sooner() -> None:
    """
    A hold of 0.1 s lets events go after 0.1 s, while the crowd goes on.
    """
    hub, clock = make_hub(crowd_hold=0.1)
    staying, first = publish_while_a_crowd_returns(hub)
    assert staying.ids() == ["t-1"]
    step = RETURN_WINDOW / 2
    for _ in range(math.ceil(0.125 / step)):  # past 0.1, well before 0.5
        clock.advance(step)
        crowd_returns(hub, first)
    assert staying.ids() == ["t-1", "t-2"]
