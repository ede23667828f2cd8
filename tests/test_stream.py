"""
Tests for L{sse_twisted.stream.EventStream} on a request that is not plain
HTTP/1.x (as under HTTP/2), where it keeps to the request's own methods; and
for how ssedemo's requests tell a stream of their end.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyChannel

from sse_twisted.stream import EventStream
from sse_twisted.web import BodyLimitedRequest


class FakeH2Stream:
    """
    The request's channel under HTTP/2: one stream, which can be reset.
    """

    def __init__(self) -> None:
        self.resets = 0

    def abortConnection(self) -> None:
        self.resets += 1


class FakeRequest:
    """
    The parts of a request an L{EventStream} uses; its channel is no
    L{twisted.web.http.HTTPChannel}.
    """

    chunked = False

    def __init__(self) -> None:
        self.channel = FakeH2Stream()
        self.site = SimpleNamespace(reactor=Clock())
        self.written: list[bytes] = []
        self.finished = False
        self.producer: object = None
        self._finish: Deferred[None] = Deferred()

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def notifyFinish(self) -> Deferred[None]:
        return self._finish

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def finish(self) -> None:
        self.finished = True
        self._finish.callback(None)

    def connectionLost(self, reason: Failure) -> None:
        self._finish.errback(reason)


def open_stream(
    max_backlog: int = 100,
) -> tuple[FakeRequest, EventStream, list[object]]:
    request = FakeRequest()
    ended: list[object] = []
    stream = EventStream(request, ended.append, max_backlog)  # type: ignore[arg-type]
    stream.start(b"hello")
    return request, stream, ended


def test_writes_through_the_request() -> None:
    request, stream, _ = open_stream()
    stream.write(b"event")
    assert request.written == [b"hello", b"event"]
    assert request.producer is stream


def test_close_finishes_once() -> None:
    """
    Closing writes the farewell, unregisters the producer and finishes;
    closing again, or after the client left, does nothing.
    """
    request, stream, ended = open_stream()
    stream.close(b"bye")
    assert request.written[-1] == b"bye"
    assert (request.finished, request.producer, ended) == (True, None, [stream])
    stream.close(b"again")
    assert request.written[-1] == b"bye"


def test_close_after_the_client_left_does_nothing() -> None:
    request, stream, ended = open_stream()
    request._finish.errback(Failure(ConnectionDone()))
    assert ended == [stream]
    stream.close(b"bye")
    assert not request.finished and request.written == [b"hello"]


def test_write_after_the_client_left_is_dropped() -> None:
    """
    Once the response is over, the stream holds no request any more (see
    tests/test_lifetime.py): what is still written to it goes nowhere.
    """
    request, stream, _ = open_stream()
    request._finish.errback(Failure(ConnectionDone()))
    stream.write(b"late")
    assert request.written == [b"hello"]


def test_slow_client_stream_is_reset() -> None:
    """
    Without an HTTP/1.x channel to abort, a stream too far behind is reset
    (its channel is an HTTP/2 stream), once; the request learns it is over
    in the next turn of the event loop, as after an aborted TCP connection,
    and what is written meanwhile is dropped.
    """
    request, stream, ended = open_stream(max_backlog=10)
    stream.pauseProducing()
    stream.write(b"x" * 11)
    assert request.channel.resets == 1
    assert ended == []
    stream.write(b"more")
    stream.close(b"bye")
    assert request.channel.resets == 1
    assert request.written == [b"hello"]
    request.site.reactor.advance(0)
    assert ended == [stream]


def test_request_tells_its_end_once() -> None:
    """
    L{BodyLimitedRequest.when_over} calls its listener once, as
    C{notifyFinish().addBoth} would: with C{None} when the response is
    finished, with the reason when the connection is lost first; a
    listener that fails is logged, and the request still ends.
    """
    finished = BodyLimitedRequest(DummyChannel(), max_body=10)
    finished.method, finished.clientproto = b"GET", b"HTTP/1.1"
    seen: list[object] = []
    finished.when_over(seen.append)
    finished.finish()
    assert seen == [None]

    lost = BodyLimitedRequest(DummyChannel(), max_body=10)
    lost.when_over(seen.append)
    reason = Failure(ConnectionDone())
    lost.connectionLost(reason)
    lost.connectionLost(reason)
    assert seen == [None, reason]

    failing = BodyLimitedRequest(DummyChannel(), max_body=10)
    events: list[Any] = []
    failing._log = Logger(observer=events.append)  # type: ignore[misc]
    failing.when_over(lambda reason: 1 / 0)
    failing.connectionLost(reason)
    assert [event["log_failure"].type for event in events] == [ZeroDivisionError]
