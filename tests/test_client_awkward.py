"""
The EventSource against a deliberately awkward server on real sockets of
127.0.0.1 (L{awkward_server}), with the real reactor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from awkward_server import AwkwardServer, Seen, _Connection, head
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from sse_twisted.client.eventsource import (
    EventSource,
    EventSourceFailed,
    MessageEvent,
    ReadyState,
    Reconnecting,
)

TIMEOUT = 10.0

AWKWARD = (
    "\ufeff: hello\r"
    "retry: soon\r"
    "retry: 50\r"
    "colour: blue\r"
    "id: 1\r"
    "data: CR only ✓\r"
    "\r"
    "id: bad\0id\r\n"
    "event: crlf\r\n"
    "data: line 1\r\n"
    "data: line 2\r\n"
    "\r\n"
    "id: 3\n"
    "data: cut in the midd"
).encode()


def reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest_twisted.async_yield_fixture
async def server() -> AsyncIterator[AwkwardServer]:
    started = await AwkwardServer(reactor()).start()
    yield started
    await started.stop()


@pytest_twisted.async_yield_fixture
async def other() -> AsyncIterator[AwkwardServer]:
    """
    A second server: another origin (another port).
    """
    started = await AwkwardServer(reactor()).start()
    yield started
    await started.stop()


async def take(source: EventSource, count: int) -> list[MessageEvent]:
    """
    The next C{count} events (or fewer if the source ends), within TIMEOUT.
    """
    got: list[MessageEvent] = []

    async def run() -> None:
        async for event in source:
            got.append(event)
            if len(got) == count:
                return

    await Deferred.fromCoroutine(run()).addTimeout(TIMEOUT, reactor())
    return got


async def ending(source: EventSource) -> BaseException | None:
    """
    Iterate to the end (within TIMEOUT): None if it ends quietly, else the
    exception it raises.
    """

    async def run() -> None:
        async for _ in source:
            pass

    try:
        await Deferred.fromCoroutine(run()).addTimeout(TIMEOUT, reactor())
    except EventSourceFailed as e:
        return e
    return None


async def pause(seconds: float) -> None:
    await deferLater(reactor(), seconds, lambda: None)


async def until(condition: Callable[[], bool]) -> None:
    """
    Wait for C{condition}: checked every 10 ms, at most TIMEOUT.
    """
    for _ in range(int(TIMEOUT / 0.01)):
        if condition():
            return
        await pause(0.01)
    raise AssertionError("condition not met in time")


def source_for(url: str, **kwargs: Any) -> EventSource:
    return EventSource(url, reactor=reactor(), **kwargs)


@pytest_twisted.ensureDeferred
async def test_an_awkward_stream_byte_by_byte(server: AwkwardServer) -> None:
    """
    Written one byte per write: a BOM, CR-only then CRLF line ends, a
    comment, an unknown field, a junk C{retry:}, an id with NUL (ignored),
    then an event cut in the middle (not dispatched). The source reconnects
    after the server's C{retry: 50}, resuming after the last whole event.
    """

    def first(connection: _Connection, seen: Seen) -> None:
        connection.write(head("200 OK"))
        connection.trickle(AWKWARD)
        server.scenes["/sse"] = again

    def again(connection: _Connection, seen: Seen) -> None:
        connection.write(head("200 OK") + b"data: after\n\n")

    server.scenes["/sse"] = first
    source = source_for(server.url + "/sse")
    errors: list[Exception] = []
    source.on_error = errors.append
    events = await take(source, 3)
    await source.close()
    origin = server.url
    assert events == [
        MessageEvent("message", "CR only ✓", "1", origin),
        MessageEvent("crlf", "line 1\nline 2", "1", origin),
        MessageEvent("message", "after", "1", origin),
    ]
    assert [s.headers.get("last-event-id") for s in server.seen] == [None, "1"]
    assert server.seen[0].headers["accept"] == "text/event-stream"
    assert server.seen[0].headers["cache-control"] == "no-cache"
    [lost] = errors
    assert isinstance(lost, Reconnecting) and 0.025 <= lost.delay <= 0.075


@pytest_twisted.ensureDeferred
async def test_204_stops_for_good(server: AwkwardServer) -> None:
    def no_content(connection: _Connection, seen: Seen) -> None:
        connection.write(head("204 No Content", None, Content_Length="0"))
        connection.end()

    server.scenes["/sse"] = no_content
    source = source_for(server.url + "/sse")
    assert await ending(source) is None
    assert source.ready_state is ReadyState.CLOSED
    await pause(0.2)
    assert len(server.seen) == 1


@pytest_twisted.ensureDeferred
async def test_500_fails_for_good_with_the_servers_error(
    server: AwkwardServer,
) -> None:
    def broken(connection: _Connection, seen: Seen) -> None:
        connection.write(head("500 Internal Server Error", "application/json"))
        connection.write(b'{"error": "the log is down"}')
        connection.end()

    server.scenes["/sse"] = broken
    source = source_for(server.url + "/sse")
    failure = await ending(source)
    assert isinstance(failure, EventSourceFailed)
    assert failure.status == 500
    assert failure.reason == "500 Internal Server Error: the log is down"
    await pause(0.2)
    assert len(server.seen) == 1


@pytest_twisted.ensureDeferred
async def test_a_200_of_another_type_fails_for_good(server: AwkwardServer) -> None:
    def page(connection: _Connection, seen: Seen) -> None:
        connection.write(head("200 OK", "text/html") + b"<p>data: no</p>\n\n")
        connection.end()

    server.scenes["/sse"] = page
    source = source_for(server.url + "/sse")
    failure = await ending(source)
    assert isinstance(failure, EventSourceFailed)
    assert (failure.status, failure.content_type) == (200, "text/html")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest_twisted.ensureDeferred
async def test_a_redirect_to_another_origin_drops_authorization(
    server: AwkwardServer, other: AwkwardServer, status: int
) -> None:
    """
    The redirect is followed without C{Authorization}; C{url} and C{origin}
    follow the final URL, and the reconnect goes there directly, still
    without it.
    """

    def moved(connection: _Connection, seen: Seen) -> None:
        connection.write(head(f"{status} Moved", None, Location=other.url + "/new"))
        connection.end()

    def stream(connection: _Connection, seen: Seen) -> None:
        connection.write(head("200 OK") + b"retry: 10\ndata: here\n\n")
        connection.end()

    server.scenes["/sse"] = moved
    other.scenes["/new"] = stream
    source = source_for(server.url + "/sse", headers={"Authorization": "Bearer s"})
    events = await take(source, 2)
    await source.close()
    assert [(e.data, e.origin) for e in events] == [("here", other.url)] * 2
    assert source.url == other.url + "/new" and source.origin == other.url
    assert server.seen[0].headers["authorization"] == "Bearer s"
    assert len(server.seen) == 1
    assert [s.headers.get("authorization") for s in other.seen] == [None, None]


@pytest_twisted.ensureDeferred
async def test_a_same_origin_redirect_keeps_authorization(
    server: AwkwardServer,
) -> None:
    def moved(connection: _Connection, seen: Seen) -> None:
        connection.write(head("307 Moved", None, Location="/new"))
        connection.end()

    def stream(connection: _Connection, seen: Seen) -> None:
        connection.write(head("200 OK") + b"data: here\n\n")

    server.scenes["/sse"] = moved
    server.scenes["/new"] = stream
    source = source_for(server.url + "/sse", headers={"Authorization": "Bearer s"})
    [_] = await take(source, 1)
    await source.close()
    assert source.url == server.url + "/new"
    assert [s.headers.get("authorization") for s in server.seen] == ["Bearer s"] * 2


@pytest_twisted.ensureDeferred
async def test_a_server_that_never_answers_times_out(server: AwkwardServer) -> None:
    server.scenes["/sse"] = lambda connection, seen: None
    source = source_for(server.url + "/sse", timeout=0.2)
    told: Deferred[Exception] = Deferred()
    source.on_error = told.callback
    error = await told.addTimeout(TIMEOUT, reactor())
    await source.close()
    assert isinstance(error, Reconnecting)
    assert error.reason == "no answer within 0.2 s"
    await until(lambda: server.connections[0].transport.disconnected)  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_a_refused_connection_is_retried(server: AwkwardServer) -> None:
    url = server.url + "/sse"
    await server.stop()
    source = source_for(url)
    told: Deferred[Exception] = Deferred()
    source.on_error = told.callback
    error = await told.addTimeout(TIMEOUT, reactor())
    await source.close()
    assert isinstance(error, Reconnecting) and error.reason == "connection refused"
    assert 1.5 <= error.delay <= 4.5


@pytest_twisted.ensureDeferred
async def test_close_ends_an_open_connection(server: AwkwardServer) -> None:
    def stream(connection: _Connection, seen: Seen) -> None:
        connection.write(head("200 OK") + b"data: one\n\n")

    server.scenes["/sse"] = stream
    source = source_for(server.url + "/sse")
    await take(source, 1)
    await source.close()
    assert source.ready_state is ReadyState.CLOSED
    await until(lambda: server.connections[0].transport.disconnected)  # type: ignore[union-attr]
