"""
Tests for L{sse_twisted.ops.jsonlog}: log events as JSON lines in a file that
C{SIGUSR1} reopens.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from twisted.logger import Logger, LogPublisher, capturedLogs

from sse_twisted.ops.jsonlog import STDOUT, JsonLog


class Reactor:
    """
    Records what is handed to C{callFromThread}, and runs it when asked.
    """

    def __init__(self) -> None:
        self.calls: list[Callable[[], object]] = []

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        self.calls.append(lambda: f(*args))

    def run(self) -> None:
        calls, self.calls = self.calls, []
        for call in calls:
            call()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def publisher() -> LogPublisher:
    return LogPublisher()


def started(path: str, publisher: LogPublisher) -> tuple[JsonLog, Reactor]:
    reactor = Reactor()
    service = JsonLog(path, reactor, publisher)  # type: ignore[arg-type]
    service.privilegedStartService()
    service.startService()
    return service, reactor


@pytest.fixture
def restore_usr1() -> Iterator[None]:
    saved = signal.getsignal(signal.SIGUSR1)
    yield
    signal.signal(signal.SIGUSR1, saved)


def test_events_are_json_lines_while_running(
    tmp_path: Path, publisher: LogPublisher, restore_usr1: None
) -> None:
    """
    Each event logged while the service runs is one line of JSON, with its
    format and fields; nothing is written after it stops.
    """
    path = tmp_path / "events.json"
    log = Logger(namespace="test", observer=publisher)
    service, _ = started(str(path), publisher)
    log.info("streams: {count}", count=3)
    log.warn("second")
    service.stopService()
    log.info("after stop")
    [first, second] = lines(path)
    assert (first["log_format"], first["count"], first["log_namespace"]) == (
        "streams: {count}",
        3,
        "test",
    )
    assert first["log_level"]["name"] == "info"
    assert second["log_format"] == "second"


def test_sigusr1_reopens_the_file_after_a_move(
    tmp_path: Path, publisher: LogPublisher, restore_usr1: None
) -> None:
    """
    On C{SIGUSR1} (run by the reactor, not in the signal handler) the file
    is reopened: a rotator that moved it away finds the later events in a
    new file at the same path. The handler that was there before (twistd's
    own rotation) still runs.
    """
    before: list[int] = []

    def twistd_rotation(signum: int, frame: FrameType | None) -> None:
        before.append(signum)

    signal.signal(signal.SIGUSR1, twistd_rotation)
    path = tmp_path / "events.json"
    log = Logger(observer=publisher)
    service, reactor = started(str(path), publisher)
    log.info("one")
    path.rename(tmp_path / "events.json.1")
    os.kill(os.getpid(), signal.SIGUSR1)
    assert before == [signal.SIGUSR1]
    log.info("still the moved file")
    reactor.run()
    log.info("two")
    service.stopService()
    assert signal.getsignal(signal.SIGUSR1) is twistd_rotation
    moved = lines(tmp_path / "events.json.1")
    assert [e["log_format"] for e in moved] == ["one", "still the moved file"]
    assert [e["log_format"] for e in lines(path)] == ["two"]


def test_a_file_that_cannot_be_reopened_is_kept(
    tmp_path: Path, publisher: LogPublisher, restore_usr1: None
) -> None:
    path = tmp_path / "events.json"
    log = Logger(observer=publisher)
    service, _ = started(str(path), publisher)
    path.rename(tmp_path / "moved.json")
    path.mkdir()
    with capturedLogs() as errors:
        service.reopen()
    log.info("kept")
    service.stopService()
    assert "cannot reopen" in errors[0]["log_format"]
    assert [e["log_format"] for e in lines(tmp_path / "moved.json")] == ["kept"]


def test_standard_output(
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    publisher: LogPublisher,
    restore_usr1: None,
) -> None:
    """
    With C{-}, the lines go to the process's standard output, and
    C{SIGUSR1} is left to whoever handles it. C{sys.stdout} gets nothing:
    twistd replaces it with a file that logs what is written to it.
    """
    replaced = io.StringIO()
    monkeypatch.setattr(sys, "stdout", replaced)
    handler = signal.getsignal(signal.SIGUSR1)
    service, _ = started(STDOUT, publisher)
    assert signal.getsignal(signal.SIGUSR1) is handler
    Logger(observer=publisher).info("hello {who}", who="you")
    service.reopen()
    service.stopService()
    [line] = capfd.readouterr().out.splitlines()
    assert json.loads(line)["who"] == "you"
    assert replaced.getvalue() == ""


class Interrupted(io.StringIO):
    """
    Standard output that a signal handler which logs interrupts in the
    middle of its first write, as Twisted's handler for C{SIGTERM} can; like
    a real file, it refuses a write from within its own.
    """

    def __init__(self, handler: Callable[[], None]) -> None:
        super().__init__()
        self._handler: Callable[[], None] | None = handler
        self._writing = False

    def write(self, text: str) -> int:
        if self._writing:
            raise RuntimeError("reentrant call inside <_io.BufferedWriter>")
        self._writing = True
        try:
            handler, self._handler = self._handler, None
            if handler is not None:
                handler()
            return super().write(text)
        finally:
            self._writing = False


def test_an_event_logged_while_one_is_written_follows_it(
    publisher: LogPublisher, restore_usr1: None
) -> None:
    """
    An event logged from a signal handler that runs in the middle of
    writing another is written right after it, and the file keeps getting
    every later event.
    """
    log = Logger(observer=publisher)
    out = Interrupted(lambda: log.info("Received SIGTERM, shutting down."))
    service = JsonLog(STDOUT, Reactor(), publisher, stdout=out)  # type: ignore[arg-type]
    service.privilegedStartService()
    log.info("streams opened: 3")
    log.info("streams ended: 3")
    service.stopService()
    written = [json.loads(line)["log_format"] for line in out.getvalue().splitlines()]
    assert written == [
        "streams opened: 3",
        "Received SIGTERM, shutting down.",
        "streams ended: 3",
    ]
