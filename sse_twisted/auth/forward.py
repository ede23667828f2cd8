"""
Forward auth: ask the application whether a client may have a stream.

For each stream that asks for protected topics, the application gets
C{GET <url>} with the client's C{Cookie} and C{Authorization} headers, its
address in C{X-Forwarded-For} and the topics in C{X-SSE-Topics}. A C{2xx}
lets the client in (on the topics its own C{X-SSE-Topics} patterns match,
when it names any), C{401} and C{403} are passed on, and anything else, or no
answer in time, is no decision: the client is told to come back later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest, IResponse

from sse_twisted.auth.gate import OPEN, Denial, Grant, Refusal, covers

TOPICS_HEADER = "X-SSE-Topics"
DEFAULT_TIMEOUT = 5.0
"""Seconds to wait for the application's answer."""

CONCURRENCY = 32
"""How many questions may be asked at once; the others wait their turn (and
count that wait in their timeout), so that a crowd of clients reconnecting
at once does not become a crowd of connections to the application."""

MAX_BODY = 64 * 1024
"""The most of the application's answer read; a longer one is cut off."""

_PASSED_ON = {401: Denial.MISSING, 403: Denial.FORBIDDEN}


class _Discard(Protocol):
    """
    Reads a response body to its end, keeping nothing, so that the
    connection can be used again.
    """

    def __init__(self) -> None:
        self.done: Deferred[None] = Deferred(lambda _: self._abort())
        self._left = MAX_BODY

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self._left -= len(data)
        if self._left < 0:
            self._abort()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.done.called:
            self.done.callback(None)


class ForwardAuthGate:
    """
    Asks the application at one URL, through a pool of kept-alive
    connections, at most L{CONCURRENCY} questions at a time.
    """

    log = Logger()

    def __init__(
        self,
        url: str,
        reactor: Any,
        timeout: float = DEFAULT_TIMEOUT,
        clock: IReactorTime | None = None,
        concurrency: int = CONCURRENCY,
    ) -> None:
        """
        @param url: The application's C{http://} or C{https://} URL.
        @param reactor: Connects to it.
        @param timeout: Seconds to wait for its whole answer.
        @param clock: Times the wait; the reactor by default.
        @param concurrency: How many questions may be asked at once.
        """
        self._url = url.encode("utf-8")
        self._pool = HTTPConnectionPool(reactor)
        self._pool.maxPersistentPerHost = concurrency
        self._turns = DeferredSemaphore(concurrency)
        self._agent = Agent(reactor, connectTimeout=timeout, pool=self._pool)
        self._timeout = timeout
        self._clock: IReactorTime = clock if clock is not None else reactor
        self._failing = False

    def authorize(
        self, request: IRequest, topics: Sequence[str]
    ) -> Grant | Deferred[Grant]:
        headers = Headers()
        for name in ("Cookie", "Authorization"):
            values = request.requestHeaders.getRawHeaders(name)
            if values:
                headers.setRawHeaders(name, values)
        headers.setRawHeaders("X-Forwarded-For", [_client_host(request)])
        headers.setRawHeaders(TOPICS_HEADER, [",".join(topics)])
        asked: Deferred[Grant] = self._turns.run(self._ask, headers, topics)
        asked.addTimeout(self._timeout, self._clock)
        asked.addErrback(self._no_answer)
        return asked

    def _ask(self, headers: Headers, topics: Sequence[str]) -> Deferred[Grant]:
        asked: Deferred[Any] = self._agent.request(b"GET", self._url, headers)
        return asked.addCallback(self._read, topics)

    def _read(self, response: IResponse, topics: Sequence[str]) -> Deferred[Grant]:
        body = _Discard()
        response.deliverBody(body)
        return body.done.addCallback(lambda _: self._decide(response, topics))

    def _decide(self, response: IResponse, topics: Sequence[str]) -> Grant:
        code = response.code
        if not (200 <= code < 300 or code in _PASSED_ON):
            raise _Unusable(f"status {code}")
        if self._failing:
            self._failing = False
            self.log.info("the auth service answers again")
        if 200 <= code < 300:
            allowed = response.headers.getRawHeaders(TOPICS_HEADER)
            if allowed is None:
                return OPEN
            patterns = [p.strip() for v in allowed for p in v.split(",")]
            refused = [t for t in topics if not covers(patterns, t)]
            if refused:
                raise Refusal(
                    Denial.FORBIDDEN,
                    f"not allowed to subscribe to {', '.join(refused)}",
                )
            return OPEN
        challenge = response.headers.getRawHeaders("WWW-Authenticate")
        raise Refusal(
            _PASSED_ON[code],
            "not allowed by the application",
            challenge[0] if challenge else None,
        )

    def _no_answer(self, failure: Failure) -> Failure:
        if failure.check(Refusal, CancelledError):
            # A decision, or the client left: nothing wrong with the service.
            return failure
        if not self._failing:
            self._failing = True
            self.log.warn(
                "the auth service gave no usable answer ({reason});"
                " clients are told to come back later",
                reason=failure.getErrorMessage() or repr(failure.value),
            )
        raise Refusal(Denial.UNAVAILABLE, "authorization is unavailable, retry later")

    def close(self) -> Deferred[None]:
        """
        Close the kept-alive connections.
        """
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed


class _Unusable(Exception):
    """
    The application answered, but not with a decision.
    """


def _client_host(request: IRequest) -> str:
    return getattr(request.getClientAddress(), "host", "unix")
