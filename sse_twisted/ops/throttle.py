"""
Log lines for what happens too often to log one line each time: the
occurrences are counted and summed up in one line at most once a second.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

INTERVAL = 1.0
"""The shortest time, in seconds, between two lines of one L{LogSummary}."""


class LogSummary:
    """
    Counts occurrences and hands their number to C{write} at most once per
    C{interval} seconds, and only when something happened since the last
    line.
    """

    def __init__(
        self,
        clock: IReactorTime,
        write: Callable[[int], None],
        *,
        interval: float = INTERVAL,
        first_after: float = 0.0,
    ) -> None:
        """
        @param clock: Times the lines.
        @param write: Logs one line for the given number of occurrences.
        @param interval: The shortest time between two lines, in seconds.
        @param first_after: How long the first occurrence after a quiet
            spell waits before its line, in seconds: C{0} logs it on the next
            turn of the event loop; C{interval} gathers a burst into one line.
        """
        self._clock = clock
        self._write = write
        self._interval = interval
        self._first_after = first_after
        self._count = 0
        self._pending = False
        self._last: float | None = None
        self._call: IDelayedCall | None = None

    def add(self, count: int = 1) -> None:
        """
        Count C{count} more occurrences (C{0} still asks for a line), and
        make sure a line follows.
        """
        self._count += count
        self._pending = True
        if self._call is None:
            due = self._first_after
            if self._last is not None:
                due = max(due, self._last + self._interval - self._clock.seconds())
            self._call = self._clock.callLater(due, self.flush)

    def flush(self) -> None:
        """
        Log what is counted now, if anything, without waiting for the
        interval (also when stopping).
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if not self._pending:
            return
        count, self._count, self._pending = self._count, 0, False
        self._last = self._clock.seconds()
        self._write(count)
