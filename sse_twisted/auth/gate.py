"""
The gate before subscribe: who may open a stream on which topics, and until
when.

A L{Gate} looks at a request for a stream and its topics and answers with a
L{Grant} (possibly with an expiry) or refuses with a L{Refusal}, at once or
later through a L{Deferred}. JWT (L{sse_twisted.auth.jwt}), forward auth
(L{sse_twisted.auth.forward}) and open access (L{OPEN_GATE}) are gates; the
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
        C{None} for never.
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
        @param patterns: The public topics, as L{Patterns}.
        @param gate: The gate for streams that ask for other topics too.
        """
        self._public = Patterns(patterns)
        self._gate = gate

    def authorize(
        self, request: IRequest, topics: Sequence[str]
    ) -> Grant | Deferred[Grant]:
        public = self._public.covers
        private = [t for t in topics if not public(t)]
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


class Patterns:
    """
    Topic patterns, sorted once so that matching a topic costs a set
    look-up and one C{startswith}: C{*} matches every topic, a pattern
    ending in C{.*} every topic that starts with what comes before the
    C{*} and goes on after it (C{user.42.*} matches C{user.42.orders},
    neither C{user.42} nor C{user.420}), any other pattern only itself.
    """

    __slots__ = ("_everything", "_exact", "_prefixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        """
        @param patterns: Topic patterns.
        """
        self._exact = frozenset(patterns)
        self._everything = "*" in self._exact
        self._prefixes = tuple(p[:-1] for p in self._exact if p.endswith(".*"))

    def covers(self, topic: str) -> bool:
        """
        @return: Whether one of the patterns matches C{topic}.
        """
        return (
            self._everything
            or topic in self._exact
            # Longer than the prefix: the slice still starts with it.
            or topic[:-1].startswith(self._prefixes)
        )


def covers(patterns: Iterable[str], topic: str) -> bool:
    """
    Whether one of C{patterns} matches C{topic}, as L{Patterns} match.

    @param patterns: Topic patterns.
    @param topic: A topic name.
    """
    return Patterns(patterns).covers(topic)


def bearer_token(request: IRequest) -> str | None:
    """
    @return: The token of the request's C{Authorization: Bearer} header, if
        it has one.
    """
    header = request.getHeader(b"authorization")
    if not header:
        return None
    scheme, _, token = header.partition(b" ")
    token = token.strip()
    if not token or scheme.lower() != b"bearer":
        return None
    return token.decode("utf-8", "replace")


def query_token(request: IRequest) -> str | None:
    """
    @return: The request's C{access_token} query argument (RFC 6750), if any.
    """
    values = request.args.get(b"access_token")
    return values[-1].decode("utf-8", "replace") if values and values[-1] else None


def presented_token(request: IRequest, cookie: bytes) -> str | None:
    """
    Find a subscriber's token: the first of the C{Authorization: Bearer}
    header, the cookie C{cookie}, and the C{access_token} query argument.

    @param request: The request.
    @param cookie: The name of the cookie.
    @return: The token, or C{None} if none is present.
    """
    token = bearer_token(request)
    if token is not None:
        return token
    value = request.getCookie(cookie)
    if value:
        return value.decode("utf-8", "replace")
    return query_token(request)
