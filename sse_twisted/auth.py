"""
The gate before subscribe: who may open a stream on which topics, and until
when.

A L{Gate} looks at a request for a stream and its topics and answers with a
L{Grant} (possibly with an expiry) or refuses with a L{Refusal}, at once or
later through a L{Deferred}. JWT (L{sse_twisted.jwt_gate}), forward auth
(L{sse_twisted.forward_auth}) and open access (L{OPEN_GATE}) are gates; the
web layer turns refusals into HTTP answers.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

DEFAULT_COOKIE = "sse_token"
"""The cookie that carries a subscriber's token unless C{--jwt-cookie} renames it."""


@dataclass(frozen=True)
class Grant:
    """
    Leave to open a stream on the topics asked for.

    @ivar expires: When the leave ends, in seconds since the epoch, or
        L{None} for never.
    @ivar issued: When the credential was issued (a JWT's C{iat}), if known.
    """

    expires: float | None = None
    issued: float | None = None


OPEN = Grant()
"""Leave without an end."""


class Denial(enum.Enum):
    """
    Why a request is refused.
    """

    MISSING = "missing"
    """No credential was presented."""
    INVALID = "invalid"
    """The credential is bad, expired or not yet valid."""
    FORBIDDEN = "forbidden"
    """The credential is good but does not cover what was asked."""
    UNAVAILABLE = "unavailable"
    """No decision could be had; the client should come back later."""


class Refusal(Exception):
    """
    A gate's no.
    """

    def __init__(
        self, denial: Denial, message: str, challenge: str | None = None
    ) -> None:
        """
        @param denial: Why.
        @param message: What is wrong, for the client.
        @param challenge: A C{WWW-Authenticate} value to send instead of
            the default one.
        """
        super().__init__(message)
        self.denial = denial
        self.message = message
        self.challenge = challenge


class Gate(Protocol):
    """
    Decides whether a request may have a stream on some topics.
    """

    def authorize(
        self, request: IRequest, topics: Sequence[str]
    ) -> Grant | Deferred[Grant]:
        """
        @param request: The request for the stream.
        @param topics: The topics asked for, valid names, at least one.
        @return: A L{Grant} covering all of C{topics}, or a L{Deferred} that
            fires with one.
        @raise Refusal: Or the L{Deferred} fails with one.
        """


class OpenGate:
    """
    Lets everyone in, for ever.
    """

    def authorize(
        self, request: IRequest, topics: Sequence[str]
    ) -> Grant | Deferred[Grant]:
        return OPEN


OPEN_GATE = OpenGate()


class PublicTopics:
    """
    Lets anyone subscribe to public topics; asks another gate about the rest.
    """

    def __init__(self, patterns: Iterable[str], gate: Gate) -> None:
        """
        @param patterns: The public topics, as L{covers} patterns.
        @param gate: The gate for streams that ask for other topics too.
        """
        self._patterns = tuple(patterns)
        self._gate = gate

    def authorize(
        self, request: IRequest, topics: Sequence[str]
    ) -> Grant | Deferred[Grant]:
        private = [t for t in topics if not covers(self._patterns, t)]
        if not private:
            return OPEN
        return self._gate.authorize(request, private)


class FirstThen:
    """
    Asks a synchronous gate first (a JWT), and another one (the application)
    when the first refuses.
    """

    def __init__(self, first: Gate, then: Gate) -> None:
        """
        @param first: The gate asked first; it must answer at once.
        @param then: The gate that decides when C{first} refuses.
        """
        self._first = first
        self._then = then

    def authorize(
        self, request: IRequest, topics: Sequence[str]
    ) -> Grant | Deferred[Grant]:
        try:
            return self._first.authorize(request, topics)
        except Refusal:
            return self._then.authorize(request, topics)


def covers(patterns: Iterable[str], topic: str) -> bool:
    """
    Whether one of C{patterns} matches C{topic}: C{*} matches every topic, a
    pattern ending in C{.*} every topic that starts with what comes before
    the C{*} and goes on after it (C{user.42.*} matches C{user.42.orders},
    neither C{user.42} nor C{user.420}), any other pattern only itself.

    @param patterns: Topic patterns.
    @param topic: A topic name.
    """
    for pattern in patterns:
        if pattern == topic or pattern == "*":
            return True
        if (
            pattern.endswith(".*")
            and len(topic) > len(pattern) - 1
            and topic.startswith(pattern[:-1])
        ):
            return True
    return False


def bearer_token(request: IRequest) -> str | None:
    """
    @return: The token of the request's C{Authorization: Bearer} header, if
        it has one.
    """
    scheme, _, token = (request.getHeader("Authorization") or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def query_token(request: IRequest) -> str | None:
    """
    @return: The request's C{access_token} query argument (RFC 6750), if any.
    """
    values = request.args.get(b"access_token")
    return values[-1].decode("utf-8", "replace") if values and values[-1] else None


def presented_token(request: IRequest, cookie: str) -> str | None:
    """
    Find a subscriber's token: the first of the C{Authorization: Bearer}
    header, the cookie C{cookie}, and the C{access_token} query argument.

    @param request: The request.
    @param cookie: The name of the cookie.
    @return: The token, or L{None} if none is present.
    """
    token = bearer_token(request)
    if token is None:
        value = request.getCookie(cookie.encode("ascii"))
        token = value.decode("utf-8", "replace") if value else None
    return token if token is not None else query_token(request)
