"""
Tests for L{sse_twisted.transport.idle}: idle timers armed at the end of the
turn time out exactly when Twisted's would, and are never made for a
connection whose request came in the same turn.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import TimeoutMixin
from twisted.web.http import HTTPChannel, Request

from sse_twisted.transport.http1 import HeadChannel
from sse_twisted.transport.idle import IdleTimeout, IdleTimers

REQUEST = b"GET /sse HTTP/1.1\r\nHost: h\r\n\r\n"


KINDS = ["at the end of the turn", "at once", "twisted"]


def channels(
    clock: Clock, count: int, kind: str = KINDS[0]
) -> list[tuple[HTTPChannel, StringTransport]]:
    """
    C{count} HTTP channels connected in one turn, each with a 60 s idle
    time-out: L{HeadChannel}s whose timers are armed at the end of the
    turn, or at once (without L{IdleTimers}), or Twisted's own channels.
    """
    timers = IdleTimers(clock)
    made = []
    for _ in range(count):
        channel = HTTPChannel() if kind == "twisted" else HeadChannel()
        channel.timeOut = 60
        channel.callLater = clock.callLater  # type: ignore[method-assign]
        if kind == KINDS[0]:
            channel.idle_timers = timers  # type: ignore[attr-defined]
        transport = StringTransport()
        channel.makeConnection(transport)
        made.append((channel, transport))
    return made


@pytest.mark.parametrize("kind", KINDS)
def test_silent_connections_time_out_as_with_twisted(kind: str) -> None:
    """
    A connection that sends nothing is timed out after the time-out, to the
    second, as with Twisted's channel; one scheduled call arms the timers
    of a whole turn.
    """
    clock = Clock()
    made = channels(clock, 3, kind)
    assert len(clock.getDelayedCalls()) == (1 if kind == KINDS[0] else 3)
    clock.advance(59)
    assert not any(transport.disconnecting for _, transport in made)
    clock.advance(1)
    assert all(transport.disconnecting for _, transport in made)


def test_request_in_the_same_turn_makes_no_timer() -> None:
    """
    A connection whose whole request arrives in the turn it was made in
    never makes an idle timer (Twisted's channel makes one and cancels
    it): the stream it opens is not timed out.
    """
    clock = Clock()
    [(channel, transport)] = channels(clock, 1)
    timers: list[float] = []

    def call_later(delay: float, f: object) -> object:
        timers.append(delay)
        return clock.callLater(delay, f)  # type: ignore[arg-type]

    channel.callLater = call_later  # type: ignore[assignment]
    # Twisted's Request leaves the response open, as a stream does.
    channel.requestFactory = Request  # type: ignore[assignment]
    channel.dataReceived(REQUEST)
    clock.advance(0)
    assert timers == []
    assert clock.getDelayedCalls() == []
    clock.advance(3600)
    assert not transport.disconnecting


@pytest.mark.parametrize("kind", KINDS)
def test_bytes_received_start_the_time_out_again(kind: str) -> None:
    """
    Bytes received (a head that is not whole yet) start the time-out again,
    as with Twisted's channel; a head that never ends is timed out.
    """
    clock = Clock()
    [(channel, transport)] = channels(clock, 1, kind)
    clock.advance(30)
    channel.dataReceived(b"GET /sse HTTP/1.1\r\n")
    clock.advance(59)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def test_idle_again_after_a_response() -> None:
    """
    After a response on a connection that stays open, the time-out runs
    again from the end of the response.
    """
    clock = Clock()
    [(channel, transport)] = channels(clock, 1)
    channel.requestFactory = Answered  # type: ignore[assignment]
    channel.dataReceived(REQUEST)
    clock.advance(0)
    assert transport.value().endswith(b"\r\n\r\nok")
    assert not transport.disconnecting
    clock.advance(59)
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting


def test_timer_asked_for_and_withdrawn_in_one_turn() -> None:
    """
    A protocol that asks for a timer, withdraws it, and asks again in the
    same turn is armed once, with the last period.
    """

    class Counting(IdleTimeout, TimeoutMixin):
        timeOut = None
        timeouts = 0

        def timeoutConnection(self) -> None:
            self.timeouts += 1

    clock = Clock()
    protocol = Counting()
    protocol.callLater = clock.callLater  # type: ignore[method-assign]
    protocol.idle_timers = IdleTimers(clock)
    protocol.setTimeout(10)
    assert protocol.setTimeout(None) == 10
    protocol.setTimeout(5)
    clock.advance(5)
    assert protocol.timeouts == 1
    clock.advance(100)
    assert protocol.timeouts == 1


class Answered(Request):
    """
    A request answered at once with C{ok}.
    """

    def process(self) -> None:
        self.setHeader(b"Content-Length", b"2")
        self.write(b"ok")
        self.finish()
