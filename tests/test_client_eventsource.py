"""
The EventSource's logic, driven deterministically: an in-memory agent and
a L{Clock}, the jitter fixed by the test.
"""

from __future__ import annotations

import pytest
from client_fakes import FakeAgent, FakeResponse
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseNeverReceived

from sse_twisted.client.eventsource import (
    EventSource,
    EventSourceFailed,
    MessageEvent,
    ReadyState,
    Reconnecting,
    serialized_origin,
)

URL = "http://stream.test/sse"


class Recorder:
    """
    An EventSource on a fake agent and a clock, with everything it tells.
    """

    def __init__(
        self,
        url: str = URL,
        jitter: float = 0.5,
        headers: dict[str, str] | None = None,
        last_event_id: str | None = None,
        timeout: float = 30,
    ) -> None:
        self.clock = Clock()
        self.agent = FakeAgent()
        self.source = EventSource(
            url,
            reactor=self.clock,
            agent=self.agent,
            headers=headers,
            last_event_id=last_event_id,
            timeout=timeout,
            random=lambda: jitter,
        )
        self.events: list[MessageEvent] = []
        self.errors: list[Exception] = []
        self.opened = 0
        self.source.add_listener("message", self.events.append)
        self.source.on_error = self.errors.append
        self.source.on_open = self._opened
        self.clock.advance(0)

    def _opened(self) -> None:
        self.opened += 1

    def open(self, url: str | None = None) -> FakeResponse:
        return self.agent.last().respond(FakeResponse(url or self.source.url))

    def refuse(self) -> None:
        self.agent.last().answer.errback(
            Failure(ConnectionRefusedError("connection refused"))
        )

    def delays(self) -> list[float]:
        return [e.delay for e in self.errors if isinstance(e, Reconnecting)]


def test_request_asks_for_an_event_stream() -> None:
    """
    The request says it wants an event stream, not cached, and sends no
    C{Last-Event-ID} before there is one; the source is connecting.
    """
    r = Recorder(headers={"Authorization": "Bearer t"})
    sent = r.agent.last()
    assert sent.url == URL
    assert sent.header("Accept") == "text/event-stream"
    assert sent.header("Cache-Control") == "no-cache"
    assert sent.header("Authorization") == "Bearer t"
    assert sent.header("Last-Event-ID") is None
    assert r.source.ready_state is ReadyState.CONNECTING == 0


def test_events_are_dispatched_by_type_with_id_and_origin() -> None:
    r = Recorder(url="http://Stream.TEST:80/sse")
    named: list[MessageEvent] = []
    r.source.add_listener("tick", named.append)
    response = r.open()
    assert r.source.ready_state is ReadyState.OPEN == 1 and r.opened == 1
    response.send(b"id: 7\ndata: a\n\nevent: tick\ndata: b\ndata: c\n\n")
    origin = "http://stream.test"
    assert r.events == [MessageEvent("message", "a", "7", origin)]
    assert named == [MessageEvent("tick", "b\nc", "7", origin)]
    assert r.source.last_event_id == "7"


def test_a_listener_removed_is_not_called() -> None:
    r = Recorder()
    r.source.remove_listener("message", r.events.append)
    r.source.remove_listener("never-added", r.events.append)
    r.open().send(b"data: a\n\n")
    assert r.events == []


def test_a_lost_stream_reconnects_after_retry_with_the_last_id() -> None:
    """
    The first reconnect after an open stream waits the server's C{retry:}
    (scaled by the jitter), and sends the last event id.
    """
    r = Recorder(jitter=0.25)  # factor 0.75
    response = r.open()
    response.send(b"retry: 2000\nid: 41\ndata: x\n\n")
    response.end()
    assert r.source.ready_state is ReadyState.CONNECTING
    assert r.delays() == [1.5]
    assert "ended the stream" in str(r.errors[0])
    r.clock.advance(1.49)
    assert len(r.agent.sent) == 1
    r.clock.advance(0.01)
    assert len(r.agent.sent) == 2
    assert r.agent.last().header("Last-Event-ID") == "41"


def test_default_retry_is_three_seconds() -> None:
    r = Recorder()  # factor 1.0
    r.open().end()
    assert r.delays() == [3.0]


def test_consecutive_failures_double_the_wait_up_to_the_cap() -> None:
    """
    3 s, then 6, 12, 24, then 30 s at most; once a stream opens, the count
    starts again.
    """
    r = Recorder()
    r.open().end()
    for _ in range(6):
        r.clock.advance(r.delays()[-1])
        r.refuse()
    assert r.delays() == [3, 6, 12, 24, 30, 30, 30]
    assert "connection refused" in str(r.errors[1])
    r.clock.advance(30)
    r.open().end()
    assert r.delays()[-1] == 3


def test_the_cap_is_the_servers_retry_when_larger() -> None:
    r = Recorder()
    response = r.open()
    response.send(b"retry: 45000\n\n")
    response.end()
    r.clock.advance(45)
    r.refuse()
    assert r.delays() == [45, 45]


@pytest.mark.parametrize("jitter, factor", [(0.0, 0.5), (0.999, 1.499)])
def test_every_wait_is_scaled_by_half_to_one_and_a_half(
    jitter: float, factor: float
) -> None:
    r = Recorder(jitter=jitter)
    r.open().end()
    assert r.delays()[0] == pytest.approx(3 * factor)


def test_a_failed_first_connection_reconnects_after_retry() -> None:
    r = Recorder()
    r.refuse()
    r.clock.advance(3)
    r.agent.last().answer.errback(
        Failure(ResponseNeverReceived([Failure(ConnectionRefusedError())]))
    )
    assert r.delays() == [3, 6]
    assert r.source.ready_state is ReadyState.CONNECTING


def test_retry_zero_does_not_hammer_a_server_that_is_down() -> None:
    """
    After C{retry: 0} the first reconnect is at once, but failed attempts
    wait at least 2, 4, ... seconds.
    """
    r = Recorder()
    response = r.open()
    response.send(b"retry: 0\n\n")
    response.end()
    r.clock.advance(0)
    r.refuse()
    r.clock.advance(2)
    r.refuse()
    assert r.delays() == [0, 2, 4]


def test_no_answer_within_the_timeout_is_a_network_error() -> None:
    r = Recorder(timeout=5)
    r.clock.advance(4.9)
    assert r.errors == []
    r.clock.advance(0.1)
    assert r.agent.cancelled == 1
    assert [str(e) for e in r.errors] == ["no answer within 5 s"]
    r.clock.advance(3)
    assert len(r.agent.sent) == 2


def test_an_open_stream_is_not_timed_out() -> None:
    r = Recorder(timeout=5)
    r.open()
    r.clock.advance(60)
    assert r.errors == [] and r.source.ready_state is ReadyState.OPEN


def test_204_stops_for_good() -> None:
    r = Recorder()
    r.agent.last().respond(FakeResponse(URL, 204, None))
    assert r.source.ready_state is ReadyState.CLOSED == 2
    [failure] = r.errors
    assert isinstance(failure, EventSourceFailed) and failure.status == 204
    r.clock.advance(100)
    assert len(r.agent.sent) == 1


def test_another_status_fails_for_good_with_the_servers_error() -> None:
    r = Recorder()
    response = r.agent.last().respond(
        FakeResponse(URL, 500, "application/json; charset=utf-8")
    )
    response.send(b'{"error": "the log is down"}')
    response.end()
    [failure] = r.errors
    assert isinstance(failure, EventSourceFailed)
    assert (failure.status, failure.content_type) == (
        500,
        "application/json; charset=utf-8",
    )
    assert failure.reason == "500 Internal Server Error: the log is down"
    r.clock.advance(100)
    assert len(r.agent.sent) == 1 and r.source.ready_state is ReadyState.CLOSED


def test_a_refusal_that_never_ends_its_body_fails_after_the_timeout() -> None:
    r = Recorder(timeout=5)
    r.agent.last().respond(FakeResponse(URL, 503, "text/plain")).send(b"busy\n")
    assert r.errors == []
    r.clock.advance(5)
    [failure] = r.errors
    assert isinstance(failure, EventSourceFailed)
    assert failure.reason == "503 Status: busy"


@pytest.mark.parametrize("content_type", ["text/html", "text/plain", None])
def test_a_200_that_is_no_event_stream_fails_for_good(
    content_type: str | None,
) -> None:
    r = Recorder()
    response = r.agent.last().respond(FakeResponse(URL, 200, content_type))
    [failure] = r.errors
    assert isinstance(failure, EventSourceFailed)
    assert failure.status == 200 and failure.content_type == (content_type or "")
    assert "not an event stream" in failure.reason
    assert response._ended  # the body is not read


def test_content_type_parameters_and_case_are_ignored() -> None:
    r = Recorder()
    r.agent.last().respond(FakeResponse(URL, 200, "Text/Event-Stream; charset=utf-8"))
    assert r.source.ready_state is ReadyState.OPEN


def test_close_while_open_closes_the_connection() -> None:
    r = Recorder()
    response = r.open()
    closed = r.source.close()
    assert r.source.ready_state is ReadyState.CLOSED
    assert response._ended
    assert closed.called
    r.clock.advance(100)
    assert len(r.agent.sent) == 1 and r.errors == []


def test_close_while_connecting_cancels_the_request() -> None:
    r = Recorder()
    closed = r.source.close()
    assert closed.called and r.agent.cancelled == 1
    r.clock.advance(100)
    assert len(r.agent.sent) == 1 and r.errors == []


def test_close_while_waiting_cancels_the_reconnect() -> None:
    r = Recorder()
    r.open().end()
    r.source.close()
    r.clock.advance(100)
    assert len(r.agent.sent) == 1


def test_close_from_a_listener_stops_the_dispatch() -> None:
    r = Recorder()
    r.source.add_listener("message", lambda event: r.source.close())
    r.open().send(b"data: 1\n\ndata: 2\n\n")
    assert [e.data for e in r.events] == ["1"]


def test_a_listener_that_raises_does_not_stop_the_stream() -> None:
    r = Recorder()

    def broken(event: MessageEvent) -> None:
        raise RuntimeError("oops")

    r.source.add_listener("message", broken)
    r.open().send(b"data: 1\n\ndata: 2\n\n")
    assert [e.data for e in r.events] == ["1", "2"]
    assert r.source.ready_state is ReadyState.OPEN


def test_a_cut_event_is_not_dispatched_and_its_id_not_kept() -> None:
    r = Recorder()
    response = r.open()
    response.send(b"id: 1\ndata: whole\n\nid: 2\ndata: cut")
    response.end()
    r.clock.advance(3)
    assert [e.data for e in r.events] == ["whole"]
    assert r.agent.last().header("Last-Event-ID") == "1"
    r.open().send(b"data: after\n\n")
    assert [(e.data, e.id) for e in r.events] == [("whole", "1"), ("after", "1")]


def test_a_given_last_event_id_is_sent_at_once() -> None:
    r = Recorder(last_event_id="5-0")
    assert r.agent.last().header("Last-Event-ID") == "5-0"


def test_a_redirected_stream_reconnects_to_the_new_url() -> None:
    """
    The final URL becomes C{url} and C{origin}; to another origin, the
    reconnects carry no C{Authorization} or cookie.
    """
    r = Recorder(headers={"Authorization": "Bearer t", "X-Other": "kept"})
    r.open("https://elsewhere.test:8443/events").end()
    assert r.source.url == "https://elsewhere.test:8443/events"
    assert r.source.origin == "https://elsewhere.test:8443"
    r.clock.advance(3)
    sent = r.agent.last()
    assert sent.url == "https://elsewhere.test:8443/events"
    assert sent.header("Authorization") is None
    assert sent.header("X-Other") == "kept"


def test_a_same_origin_redirect_keeps_authorization() -> None:
    r = Recorder(headers={"Authorization": "Bearer t"})
    r.open("http://stream.test/other").end()
    r.clock.advance(3)
    assert r.agent.last().header("Authorization") == "Bearer t"


def test_serialized_origin() -> None:
    assert serialized_origin("HTTP://Host:80/x?y") == "http://host"
    assert serialized_origin("https://h:443/") == "https://h"
    assert serialized_origin("https://h:8443/") == "https://h:8443"
    assert serialized_origin("http://[::1]:8080/sse") == "http://[::1]:8080"


def test_only_http_urls_are_taken() -> None:
    with pytest.raises(ValueError):
        EventSource("ftp://host/sse", reactor=Clock(), agent=FakeAgent())


def collect(source: EventSource) -> tuple[Deferred[list[str]], list[str]]:
    received: list[str] = []

    async def consume() -> list[str]:
        async for event in source:
            received.append(event.data)
        return received

    return ensureDeferred(consume()), received


def test_async_for_yields_events_and_ends_on_close() -> None:
    r = Recorder()
    done, received = collect(r.source)
    response = r.open()
    response.send(b"data: 1\n\ndata: 2\n\n")
    assert received == ["1", "2"] and not done.called
    r.source.close()
    assert done.called and done.result == ["1", "2"]


def test_async_for_ends_quietly_on_204() -> None:
    r = Recorder()
    done, _ = collect(r.source)
    r.agent.last().respond(FakeResponse(URL, 204, None))
    assert done.result == []


def test_async_for_raises_on_a_failure_for_good() -> None:
    r = Recorder()
    done, received = collect(r.source)
    response = r.open()
    response.send(b"data: 1\n\n")
    response.end()  # a lost stream, then a refusal:
    r.clock.advance(3)
    r.agent.last().respond(FakeResponse(URL, 403, "application/json")).end()
    assert received == ["1"]
    failure = done.result
    assert isinstance(failure, Failure) and failure.check(EventSourceFailed)
    assert failure.value.status == 403
    done.addErrback(lambda f: None)


def test_async_for_gets_events_that_came_before_it_asked() -> None:
    r = Recorder()
    iterator = r.source.__aiter__()
    r.open().send(b"data: 1\n\ndata: 2\n\n")
    r.source.close()
    done, _ = collect(iterator)
    assert done.result == ["1", "2"]


def test_a_slow_async_consumer_pauses_the_connection() -> None:
    from sse_twisted.client import eventsource

    r = Recorder()
    r.source.__aiter__()
    response = r.open()
    response.send(b"data: x\n\n" * eventsource.QUEUE_HIGH)
    assert response.transport.paused
    done, received = collect(r.source)
    assert not response.transport.paused
    assert len(received) == eventsource.QUEUE_HIGH
    r.source.close()
    assert done.called


def test_errors_are_told_as_reconnecting_or_failed() -> None:
    r = Recorder()
    r.open().end()
    r.clock.advance(3)
    r.agent.last().respond(FakeResponse(URL, 401, "application/json")).end()
    reconnecting, failed = r.errors
    assert isinstance(reconnecting, Reconnecting)
    assert isinstance(failed, EventSourceFailed) and failed.status == 401
