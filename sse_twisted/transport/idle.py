"""
Idle timers armed at the end of the turn of the event loop in which they
were asked for, rather than at once.

Twisted's HTTP channel arms its idle timer when a connection is made and
cancels it when the request has arrived. On an C{eagertcp:} port the
request is usually read in the same turn as the accept, so the timer is
made, pushed onto the reactor's heap of timed calls and cancelled without
ever being needed: a few percent of the cost of opening a stream. With
L{IdleTimeout}, a protocol that asks for an idle timer joins its
L{IdleTimers}' list for the turn; one call at the end of the turn arms the
timers of those still waiting, counting the time already gone, so that
they time out exactly when Twisted's would.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class IdleTimers:
    """
    The idle timers that protocols ask for in one turn of the event loop,
    armed together once the turn's other work is done.
    """

    def __init__(self, clock: IReactorTime) -> None:
        """
        @param clock: The reactor (or a L{twisted.internet.task.Clock}).
        """
        self._clock = clock
        self._waiting: list[IdleTimeout] = []
        self._asked = 0.0
        self._turn_end: IDelayedCall | None = None

    def add(self, protocol: IdleTimeout) -> None:
        """
        Arm C{protocol}'s timer at the end of this turn, if it still waits.
        """
        self._waiting.append(protocol)
        if self._turn_end is None:
            self._asked = self._clock.seconds()
            self._turn_end = self._clock.callLater(0, self._arm)

    def _arm(self) -> None:
        self._turn_end = None
        waiting, self._waiting = self._waiting, []
        # Nothing in a real reactor; a test's Clock may have moved on.
        elapsed = self._clock.seconds() - self._asked
        for protocol in waiting:
            protocol.arm_idle_timer(elapsed)


class IdleTimeout:
    """
    A mix-in for a protocol that uses L{twisted.protocols.policies.TimeoutMixin}
    (placed before it): the same C{setTimeout} and C{resetTimeout}, whose
    timer, when the protocol has L{idle_timers}, is armed at the end of the
    turn in which it was asked for, and only if still wanted.

    @ivar idle_timers: Arms the timer at the end of the turn; C{None}, at
        once (as C{TimeoutMixin}).
    """

    timeOut: int | None
    callLater: Callable[..., IDelayedCall]
    timeoutConnection: Callable[[], object]
    idle_timers: IdleTimers | None = None
    _idle: IDelayedCall | None = None
    _idle_waits = False

    def setTimeout(self, period: int | None) -> int | None:
        """
        Change the idle time-out, as C{TimeoutMixin.setTimeout}.

        @param period: Seconds, or C{None} for no time-out.
        @return: The previous period.
        """
        previous, self.timeOut = self.timeOut, period
        idle = self._idle
        if period is None:
            self._idle_waits = False
            if idle is not None:
                self._idle = None
                idle.cancel()
        elif idle is not None:
            idle.reset(period)
        elif self.idle_timers is None:
            self._idle = self.callLater(period, self._idle_over)
        elif not self._idle_waits:
            self._idle_waits = True
            self.idle_timers.add(self)
        return previous

    def resetTimeout(self) -> None:
        """
        Start the idle time-out again, as C{TimeoutMixin.resetTimeout}.
        """
        if self._idle is not None and self.timeOut is not None:
            self._idle.reset(self.timeOut)

    def arm_idle_timer(self, elapsed: float) -> None:
        """
        Arm the timer asked for C{elapsed} seconds ago, if still wanted.
        """
        if not self._idle_waits:
            return
        self._idle_waits = False
        if self.timeOut is not None:
            self._idle = self.callLater(
                max(0.0, self.timeOut - elapsed), self._idle_over
            )

    def _idle_over(self) -> None:
        self._idle = None
        self.timeoutConnection()
