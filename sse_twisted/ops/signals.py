"""
The operator's signals handled from the reactor's loop.

A signal handler runs between any two steps of the process, also while a
log observer is writing an event. Twisted's handlers for C{SIGTERM} and
C{SIGINT} log ("Received SIGTERM, shutting down.") right there: twistd's
log file observer then waits forever for the lock its interrupted write
holds, and a file that another observer writes refuses the nested write,
so the process hangs at its stop or loses the rest of its log.
L{SignalsInLoop} has the handlers Twisted installed run from the reactor's
loop instead, as the next thing it does.
"""

from __future__ import annotations

import signal
from functools import partial
from types import FrameType
from typing import Any

from twisted.application.service import Service

_Handler = Any

HANDLED = (signal.SIGTERM, signal.SIGINT)
"""The signals whose handlers are run from the reactor's loop."""


class SignalsInLoop(Service):
    """
    Once the reactor runs, replaces its handlers for L{HANDLED} with ones
    that hand the signal to the reactor's loop, where Twisted's handler
    then runs: it logs, stops the reactor and notes the signal for twistd's
    exit status, as before.
    """

    def __init__(self, reactor: Any) -> None:
        """
        @param reactor: Provides C{IReactorCore} and C{IReactorThreads}.
        """
        self._reactor = reactor

    def startService(self) -> None:
        super().startService()
        self._reactor.callWhenRunning(self._move_handlers)

    def _move_handlers(self) -> None:
        for signum in HANDLED:
            handler = signal.getsignal(signum)
            if callable(handler) and handler is not signal.default_int_handler:
                signal.signal(signum, partial(self._in_loop, handler))

    def _in_loop(self, handler: _Handler, signum: int, frame: FrameType | None) -> None:
        # Nothing but the hand-over: callFromThread only queues the call
        # and wakes the reactor.
        self._reactor.callFromThread(handler, signum, None)
