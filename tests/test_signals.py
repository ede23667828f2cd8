"""
Tests for L{sse_twisted.ops.signals}: the handlers Twisted installs for
C{SIGTERM} and C{SIGINT} run from the reactor's loop, not in the signal
handler.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from sse_twisted.ops.signals import HANDLED, SignalsInLoop


class LoopReactor:
    """
    Runs C{callWhenRunning} at once and queues C{callFromThread}, as a
    running reactor's loop would before its next turn.
    """

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[..., object], tuple[object, ...]]] = []

    def callWhenRunning(self, f: Callable[[], object]) -> None:
        f()

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        self.queued.append((f, args))

    def turn(self) -> None:
        queued, self.queued = self.queued, []
        for f, args in queued:
            f(*args)


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in HANDLED}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_twisteds_handler_runs_in_the_next_turn(handlers: None) -> None:
    """
    A signal only queues the handler that was installed (Twisted's, which
    logs and stops): it runs in the reactor's next turn, once per signal,
    with the signal's number.
    """
    received: list[int] = []

    def twisted_handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    signal.signal(signal.SIGTERM, twisted_handler)
    reactor: Any = LoopReactor()
    SignalsInLoop(reactor).startService()
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    assert received == []
    reactor.turn()
    assert received == [signal.SIGTERM, signal.SIGTERM]


def test_an_ignored_or_default_signal_is_left_alone(handlers: None) -> None:
    """
    A signal that is ignored (a worker's C{SIGINT}) or has Python's own
    handler keeps it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    SignalsInLoop(LoopReactor()).startService()
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    signal.signal(signal.SIGINT, signal.default_int_handler)
    SignalsInLoop(LoopReactor()).startService()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
