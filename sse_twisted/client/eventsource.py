"""
A Twisted C{EventSource}: follows an event stream as a browser does, by the
WHATWG processing model, on treq.

Opening: a C{200} with C{text/event-stream} opens the stream; redirects
(301, 302, 303, 307, 308) are followed, and the final URL is the one used
for reconnects (a redirect to another origin drops C{Authorization} and
cookies, then and for every reconnect). A C{204} stops for good; any other
status or content type fails for good.

Reconnecting: a lost connection, an end of the body, a network error (a
refused connection, a failed DNS lookup, no answer within C{timeout}
seconds) reconnect, sending C{Last-Event-ID}. The first reconnect after a
stream that was open waits the server's C{retry:} (3 s until it says
otherwise); each consecutive failed attempt doubles the wait (from at
least 1 s), up to L{MAX_BACKOFF} or C{retry:} if that is larger; every wait
is scaled by a random factor between 0.5 and 1.5, so that clients that lost
the same server do not come back together. The count starts again once a
stream opens.
"""

from __future__ import annotations

import enum
import json
import random as _random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, ResponseDone
from twisted.web.error import InfiniteRedirection, RedirectWithNoLocation
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from sse_twisted.client.parser import EventStreamParser

DEFAULT_RETRY = 3.0
"""Seconds to wait before reconnecting, until the server says otherwise."""

MIN_BACKOFF = 1.0
"""The smallest wait, in seconds, that doubles after a failed attempt."""

MAX_BACKOFF = 30.0
"""The longest wait between attempts, in seconds, unless C{retry:} is longer."""

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for a connection and the response's headers."""

ERROR_BODY_LIMIT = 4096
"""How much of a refusal's body is read for its reason, in bytes."""

QUEUE_HIGH = 1000
"""Events waiting for an C{async for} consumer at which reading pauses."""

_SENSITIVE = frozenset({"authorization", "proxy-authorization", "cookie", "cookie2"})


class ReadyState(enum.IntEnum):
    """
    The state of an L{EventSource}, with the browser's values.
    """

    CONNECTING = 0
    OPEN = 1
    CLOSED = 2


@dataclass(frozen=True)
class MessageEvent:
    """
    One event of the stream.

    @ivar type: The event type (C{"message"} unless named).
    @ivar data: The data, its lines joined by LF.
    @ivar id: The last event id once this event arrived (C{""} for none).
    @ivar origin: The serialized origin of the stream, C{scheme://host[:port]}.
    """

    type: str
    data: str
    id: str
    origin: str


class EventSourceFailed(Exception):
    """
    The source stopped for good: it will not reconnect.

    @ivar status: The HTTP status that stopped it, if there was one.
    @ivar content_type: The response's C{Content-Type}, if there was one.
    @ivar reason: What went wrong, for a person.
    @ivar url: The URL that answered.
    """

    def __init__(
        self,
        reason: str,
        url: str,
        status: int | None = None,
        content_type: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.url = url
        self.status = status
        self.content_type = content_type


class Reconnecting(Exception):
    """
    Given to L{EventSource.on_error} when the connection is lost or could
    not be made, and the source will try again.

    @ivar reason: What went wrong, for a person.
    @ivar delay: Seconds until the next attempt.
    """

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


def serialized_origin(url: str) -> str:
    """
    @param url: An absolute http(s) URL.
    @return: Its origin, C{scheme://host[:port]}, without a default port.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or port == {"http": 80, "https": 443}.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class _Body(Protocol):
    """
    Receives a response's body and hands it on; can stop it early.
    """

    def __init__(
        self, received: Callable[[bytes], object], ended: Callable[[Failure], object]
    ) -> None:
        self._received = received
        self._ended = ended
        self._stopping = False
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        if self._stopping:
            self.transport.stopProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if not self._stopping:
            self._received(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._ended(reason or Failure(CancelledError()))
        self.lost.callback(None)

    def stop(self) -> Deferred[None]:
        """
        Stop receiving (the connection is closed).

        @return: Fires once it is.
        """
        if not self._stopping:
            self._stopping = True
            if self.transport is not None:
                self.transport.stopProducing()  # type: ignore[attr-defined]
        return self.lost

    def pause(self, paused: bool) -> None:
        """
        Stop, or start again, reading from the connection.
        """
        if self.transport is not None and not self._stopping:
            if paused:
                self.transport.pauseProducing()  # type: ignore[attr-defined]
            else:
                self.transport.resumeProducing()  # type: ignore[attr-defined]


_END = object()


class EventSource:
    """
    Follows the event stream at a URL, reconnecting as the WHATWG model
    says, until L{close}d or stopped for good.

    Consume it with callbacks (L{add_listener}, L{on_open}, L{on_error}) or
    with C{async for event in source:} inside a coroutine run by
    L{twisted.internet.defer.ensureDeferred} or L{twisted.internet.task.react};
    the iteration ends when the source is closed or told to stop (C{204}),
    and raises L{EventSourceFailed} when it fails for good.

    @ivar url: The stream's URL (after redirects, once a stream opened).
    @ivar origin: The serialized origin of C{url}.
    @ivar ready_state: L{ReadyState.CONNECTING}, C{OPEN} or C{CLOSED}.
    @ivar last_event_id: The last event id received (sent on reconnects).
    @ivar retry: Seconds to wait before the first reconnect after a stream
        that was open (the server's C{retry:}).
    @ivar on_open: Called with no argument each time a stream opens.
    @ivar on_error: Called with a L{Reconnecting} when the source will try
        again, or with the L{EventSourceFailed} that stopped it for good.
    """

    log = Logger()

    def __init__(
        self,
        url: str,
        *,
        reactor: Any = None,
        headers: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        agent: IAgent | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        random: Callable[[], float] = _random.random,
    ) -> None:
        """
        Start connecting (once the reactor runs).

        @param url: An C{http://} or C{https://} URL.
        @param reactor: Times reconnects and, without C{agent}, connects;
            by default the global reactor.
        @param headers: Headers to send with every request, such as
            C{Authorization}.
        @param last_event_id: The id to resume after, sent as
            C{Last-Event-ID} with the first request too.
        @param agent: Makes the requests; by default an
            L{twisted.web.client.Agent} on C{reactor}.
        @param timeout: Seconds to wait for a connection and the response's
            headers before treating the attempt as a network error.
        @param random: Returns a number in [0, 1) for the jitter of waits.
        @raise ValueError: If C{url} is not an absolute http(s) URL.
        """
        if reactor is None:
            from twisted.internet import reactor as _global

            reactor = _global
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        self.url = url
        self.origin = serialized_origin(url)
        self.ready_state = ReadyState.CONNECTING
        self.last_event_id = last_event_id or ""
        self.retry = DEFAULT_RETRY
        self.on_open: Callable[[], object] | None = None
        self.on_error: Callable[[Exception], object] | None = None
        self._reactor: Any = reactor  # IReactorTime, and the reactor treq takes
        self._headers = dict(headers or {})
        self._http = HTTPClient(agent or Agent(reactor))
        self._timeout = timeout
        self._random = random
        self._listeners: dict[str, list[Callable[[MessageEvent], object]]] = {}
        self._attempts = 0
        self._request: Deferred[Any] | None = None
        self._timer: IDelayedCall | None = None
        self._timed_out = False
        self._body: _Body | None = None
        self._parser = EventStreamParser(record=False)
        self._iterating = False
        self._queue: deque[MessageEvent] = deque()
        self._paused = False
        self._waiters: deque[Deferred[object]] = deque()
        self._failure: EventSourceFailed | None = None
        self._pending: IDelayedCall | None = reactor.callLater(0, self._connect)

    # Listening

    def add_listener(
        self, type: str, listener: Callable[[MessageEvent], object]
    ) -> None:
        """
        Call C{listener} with each event of type C{type} (C{"message"} for
        events without a name).
        """
        self._listeners.setdefault(type, []).append(listener)

    def remove_listener(
        self, type: str, listener: Callable[[MessageEvent], object]
    ) -> None:
        """
        Stop calling C{listener} for C{type}; nothing if it was not added.
        """
        listeners = self._listeners.get(type, [])
        if listener in listeners:
            listeners.remove(listener)

    def __aiter__(self) -> EventSource:
        self._iterating = True
        return self

    async def __anext__(self) -> MessageEvent:
        self._iterating = True
        if self._queue:
            event = self._queue.popleft()
            if self._paused and not self._queue:
                self._pause(False)
            return event
        if self.ready_state is ReadyState.CLOSED:
            self._end_iteration()
        waiter: Deferred[object] = Deferred()
        self._waiters.append(waiter)
        result = await waiter
        if result is _END:
            self._end_iteration()
        assert isinstance(result, MessageEvent)
        return result

    def _end_iteration(self) -> NoReturn:
        if self._failure is not None:
            raise self._failure
        raise StopAsyncIteration

    def close(self) -> Deferred[None]:
        """
        Stop for good: no more events, no reconnect.

        @return: Fires when the connection is closed.
        """
        if self.ready_state is ReadyState.CLOSED:
            return self._body.lost if self._body is not None else succeed(None)
        self.ready_state = ReadyState.CLOSED
        self._stop_timer()
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._request is not None:
            self._request.cancel()
        self._wake_all()
        if self._body is not None:
            return self._body.stop()
        return succeed(None)

    # Connecting

    def _connect(self) -> None:
        self._pending = None
        self._timed_out = False
        headers = Headers(
            {b"Accept": [b"text/event-stream"], b"Cache-Control": [b"no-cache"]}
        )
        for name, value in self._headers.items():
            headers.addRawHeader(name.encode("ascii"), value.encode("utf-8"))
        if self.last_event_id:
            headers.setRawHeaders(
                b"Last-Event-ID", [self.last_event_id.encode("utf-8")]
            )
        request = self._http.request(
            "GET", self.url, headers=headers, unbuffered=True, reactor=self._reactor
        )
        self._request = request
        self._timer = self._reactor.callLater(self._timeout, self._time_out)
        request.addCallbacks(self._answered, self._not_answered)

    def _time_out(self) -> None:
        self._timer = None
        self._timed_out = True
        if self._request is not None:
            self._request.cancel()
        elif self._body is not None:
            self._body.stop()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _not_answered(self, failure: Failure) -> None:
        self._request = None
        self._stop_timer()
        if self.ready_state is ReadyState.CLOSED:
            return
        if failure.check(InfiniteRedirection, RedirectWithNoLocation):
            self._fail(
                EventSourceFailed(f"bad redirect: {_describe(failure)}", self.url)
            )
        elif self._timed_out:
            self._reconnect(f"no answer within {self._timeout:g} s")
        else:
            self._reconnect(_describe(failure))

    def _answered(self, response: IResponse) -> None:
        self._request = None
        if self.ready_state is ReadyState.CLOSED:
            self._discard(response)
            return
        url = response.request.absoluteURI.decode("ascii")
        status = response.code
        content_type = _header(response, b"content-type")
        if status == 204:
            self._stop_timer()
            self._discard(response)
            self._fail(
                EventSourceFailed(
                    "the server said 204 No Content: stop", url, status, content_type
                )
            )
        elif status != 200:
            self._read_refusal(response, url, status, content_type)
        elif _media_type(content_type) != "text/event-stream":
            self._stop_timer()
            self._discard(response)
            self._fail(
                EventSourceFailed(
                    f"not an event stream: Content-Type {content_type or 'missing'}",
                    url,
                    status,
                    content_type,
                )
            )
        else:
            self._stop_timer()
            self._open(response, url)

    def _open(self, response: IResponse, url: str) -> None:
        origin = serialized_origin(url)
        if origin != self.origin:
            self._headers = {
                name: value
                for name, value in self._headers.items()
                if name.lower() not in _SENSITIVE
            }
        self.url, self.origin = url, origin
        self.ready_state = ReadyState.OPEN
        self._attempts = 0
        self._parser = EventStreamParser(last_event_id=self.last_event_id, record=False)
        body = self._body = _Body(self._received, self._ended)
        self._call(self.on_open)
        response.deliverBody(body)
        if self.ready_state is ReadyState.CLOSED:
            body.stop()

    def _received(self, data: bytes) -> None:
        if self.ready_state is not ReadyState.OPEN:
            return
        parser = self._parser
        for parsed in parser.feed(data):
            self.last_event_id = parsed.last_event_id
            self._dispatch(
                MessageEvent(
                    parsed.type, parsed.data, parsed.last_event_id, self.origin
                )
            )
            if self.ready_state is not ReadyState.OPEN:
                return
        self.last_event_id = parser.last_event_id
        if parser.retry is not None:
            self.retry = parser.retry / 1000

    def _dispatch(self, event: MessageEvent) -> None:
        for listener in list(self._listeners.get(event.type, ())):
            self._call(listener, event)
        if not self._iterating:
            return
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.callback(event)
        else:
            self._queue.append(event)
            if len(self._queue) >= QUEUE_HIGH and not self._paused:
                self._pause(True)

    def _pause(self, paused: bool) -> None:
        self._paused = paused
        if self._body is not None:
            self._body.pause(paused)

    def _ended(self, reason: Failure) -> None:
        self._body = None
        self._paused = False
        if self.ready_state is ReadyState.CLOSED:
            return
        self._reconnect(_describe_end(reason))

    def _read_refusal(
        self, response: IResponse, url: str, status: int, content_type: str
    ) -> None:
        """
        Read the start of a refusal's body for its reason, then fail.
        """
        received = bytearray()

        def take(data: bytes) -> None:
            received.extend(data[: ERROR_BODY_LIMIT - len(received)])
            if len(received) >= ERROR_BODY_LIMIT and self._body is not None:
                self._body.stop()

        def ended(_: Failure) -> None:
            self._body = None
            self._stop_timer()
            if self.ready_state is ReadyState.CLOSED:
                return
            reason = f"{status} {response.phrase.decode('latin-1')}".rstrip()
            detail = _error_text(bytes(received), content_type)
            if detail:
                reason += f": {detail}"
            self._fail(EventSourceFailed(reason, url, status, content_type))

        self._body = _Body(take, ended)
        response.deliverBody(self._body)

    @staticmethod
    def _discard(response: IResponse) -> None:
        body = _Body(lambda data: None, lambda reason: None)
        response.deliverBody(body)
        body.stop()

    # Ending

    def _reconnect(self, reason: str) -> None:
        self.ready_state = ReadyState.CONNECTING
        delay = self._next_delay()
        self._pending = self._reactor.callLater(delay, self._connect)
        self._call(self.on_error, Reconnecting(reason, delay))

    def _next_delay(self) -> float:
        """
        @return: The wait before the next attempt, as the module says.
        """
        attempt = self._attempts
        self._attempts += 1
        if attempt == 0:
            base = self.retry
        else:
            base = max(self.retry, MIN_BACKOFF) * 2 ** min(attempt, 16)
        return min(base, max(MAX_BACKOFF, self.retry)) * (0.5 + self._random())

    def _fail(self, failure: EventSourceFailed) -> None:
        self.ready_state = ReadyState.CLOSED
        if failure.status != 204:
            self._failure = failure
        self._wake_all()
        self._call(self.on_error, failure)

    def _next_waiter(self) -> Deferred[object] | None:
        """
        @return: The first C{async for} still waiting (one that was
            cancelled, by a timeout say, waits no more), if any.
        """
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.called:
                return waiter
        return None

    def _wake_all(self) -> None:
        while (waiter := self._next_waiter()) is not None:
            waiter.callback(_END)

    def _call(self, function: Callable[..., object] | None, *args: object) -> None:
        if function is None:
            return
        try:
            function(*args)
        except Exception:
            self.log.failure("an EventSource callback raised")


def _header(response: IResponse, name: bytes) -> str:
    values = response.headers.getRawHeaders(name)
    return values[-1].decode("latin-1") if values else ""


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _error_text(body: bytes, content_type: str) -> str:
    """
    @return: The server's C{error} from a JSON body, else the body's first
        line, shortened.
    """
    text = body.decode("utf-8", "replace")
    if _media_type(content_type).endswith("json"):
        try:
            answer = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(answer, dict) and isinstance(answer.get("error"), str):
                return str(answer["error"])
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else ""


def _describe(failure: Failure) -> str:
    reasons = getattr(failure.value, "reasons", None)
    if reasons:
        failure = reasons[0]
    if failure.check(ConnectionRefusedError):
        return "connection refused"
    if failure.check(DNSLookupError):
        return failure.getErrorMessage().rstrip(".")
    if failure.check(CancelledError):
        return "cancelled"
    message = failure.getErrorMessage().rstrip(".")
    return message if message else type(failure.value).__name__


def _describe_end(reason: Failure) -> str:
    if reason.check(ResponseDone, PotentialDataLoss):
        return "the server ended the stream"
    return f"connection lost ({_describe(reason)})"


__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "MAX_BACKOFF",
    "MIN_BACKOFF",
    "EventSource",
    "EventSourceFailed",
    "MessageEvent",
    "ReadyState",
    "Reconnecting",
    "serialized_origin",
]
