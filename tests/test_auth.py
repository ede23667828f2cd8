"""
Tests for L{sse_twisted.auth.gate}, L{sse_twisted.ops.access_log} and
L{sse_twisted.auth.expiry}: topic patterns, gates put together, redaction, and
when a token's warning is due.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from sse_twisted.auth.expiry import warning_time
from sse_twisted.auth.gate import (
    OPEN,
    Denial,
    FirstThen,
    Grant,
    Patterns,
    PublicTopics,
    Refusal,
    covers,
)
from sse_twisted.auth.publish import is_local
from sse_twisted.ops.access_log import access_log_line, redact
from sse_twisted.web import BodyLimitedRequest, refusal_error


@pytest.mark.parametrize(
    "pattern,topic,matches",
    [
        ("user.42.*", "user.42.orders", True),
        ("user.42.*", "user.42.orders.today", True),
        ("user.42.*", "user.42.x", True),
        ("user.42.*", "user.42", False),
        ("user.42.*", "user.42.", False),
        ("user.42.*", "user.420", False),
        ("user.42.*", "user.4", False),
        ("user.42.*", "xuser.42.orders", False),
        ("user.42", "user.42", True),
        ("user.42", "user.42.orders", False),
        ("user.42", "user.4", False),
        ("*", "anything", True),
        ("*", "default", True),
        ("user*", "user1", False),
        ("", "user", False),
    ],
)
def test_pattern_boundaries(pattern: str, topic: str, matches: bool) -> None:
    assert covers([pattern], topic) is matches


def test_no_patterns_cover_nothing() -> None:
    assert not covers([], "default")


def test_any_of_several_patterns_covers() -> None:
    patterns = Patterns(["news", "user.42.*", "org.7.*"])
    assert [patterns.covers(t) for t in ("news", "org.7.x", "user.42.a")] == [
        True,
        True,
        True,
    ]
    assert [patterns.covers(t) for t in ("org.7", "user.4", "new")] == [
        False,
        False,
        False,
    ]


class Recorder:
    """
    A gate that records what it is asked and answers as told.
    """

    def __init__(self, answer: Grant | Refusal) -> None:
        self.asked: list[list[str]] = []
        self.answer = answer

    def authorize(
        self, request: IRequest, topics: Sequence[str]
    ) -> Grant | Deferred[Grant]:
        self.asked.append(list(topics))
        if isinstance(self.answer, Refusal):
            raise self.answer
        return self.answer


def test_public_topics_need_no_gate() -> None:
    """
    A stream on public topics only is let in for ever without asking; one
    that asks for others too is decided by the gate, on those others.
    """
    inner = Recorder(Grant(expires=5))
    gate = PublicTopics(["default", "news.*"], inner)
    assert gate.authorize(DummyRequest([]), ["default", "news.today"]) is OPEN
    assert inner.asked == []
    assert gate.authorize(DummyRequest([]), ["default", "private", "news"]) == Grant(
        expires=5
    )
    assert inner.asked == [["private", "news"]]


def test_first_then_asks_the_second_only_on_refusal() -> None:
    jwt = Recorder(Grant(expires=1))
    app = Recorder(OPEN)
    assert FirstThen(jwt, app).authorize(DummyRequest([]), ["a"]) == Grant(expires=1)
    assert app.asked == []
    jwt.answer = Refusal(Denial.INVALID, "bad")
    assert FirstThen(jwt, app).authorize(DummyRequest([]), ["a"]) is OPEN
    assert app.asked == [["a"]]


@pytest.mark.parametrize(
    "denial,code,challenge",
    [
        (Denial.MISSING, 401, 'Bearer realm="ssedemo"'),
        (Denial.INVALID, 401, 'Bearer error="invalid_token"'),
        (Denial.FORBIDDEN, 403, None),
        (Denial.UNAVAILABLE, 503, None),
    ],
)
def test_refusals_as_http(denial: Denial, code: int, challenge: str | None) -> None:
    error = refusal_error(Refusal(denial, "why"))
    assert (error.code, error.message) == (code, "why")
    assert dict(error.headers).get("WWW-Authenticate") == challenge


def test_a_passed_on_challenge_is_kept() -> None:
    error = refusal_error(Refusal(Denial.MISSING, "no", 'Basic realm="app"'))
    assert dict(error.headers) == {"WWW-Authenticate": 'Basic realm="app"'}


@pytest.mark.parametrize(
    "uri,redacted",
    [
        (b"/sse", b"/sse"),
        (b"/sse?topic=a", b"/sse?topic=a"),
        (b"/sse?access_token=abc", b"/sse?access_token=[redacted]"),
        (
            b"/sse?topic=a&access_token=abc&topic=b",
            b"/sse?topic=a&access_token=[redacted]&topic=b",
        ),
        (b"/sse?access%5Ftoken=abc", b"/sse?access%5Ftoken=[redacted]"),
        (b"/sse?access_token", b"/sse?access_token=[redacted]"),
        (b"/sse?my_access_token=abc", b"/sse?my_access_token=abc"),
        (
            b"/sse?topic=a;access_token=abc&topic=b",
            b"/sse?topic=a;access_token=[redacted]&topic=b",
        ),
        (b"/sse?;access_token=abc;", b"/sse?;access_token=[redacted];"),
    ],
)
def test_redact(uri: bytes, redacted: bytes) -> None:
    assert redact(uri) == redacted


def test_access_log_line_has_no_query_token() -> None:
    request = DummyRequest([b"sse"])
    request.uri = b"/sse?access_token=sekrit&topic=a"
    request.method = b"GET"
    request.clientproto = b"HTTP/1.1"
    request.code = 200
    request.sentLength = 42
    request.requestHeaders.setRawHeaders(b"referer", [b"http://x/?access_token=s2"])
    line = access_log_line("[t]", request)
    assert "sekrit" not in line and "s2" not in line
    assert '"GET /sse?access_token=[redacted]&topic=a HTTP/1.1" 200 42' in line


@pytest.mark.parametrize(
    "expires,issued,opened,due",
    [
        (1000, 0, 0, 970),  # a long life: thirty seconds before
        (1000, None, 900, 970),
        (1000, 980, 0, 990),  # twenty seconds from iat: half of it
        (1000, None, 990, 995),  # ten seconds from opening: half of it
        (1000, 1010, 0, 1000),  # issued after it expires: at the end
    ],
)
def test_warning_time(
    expires: float, issued: float | None, opened: float, due: float
) -> None:
    assert warning_time(expires, issued, opened) == due


def test_request_repr_has_no_query_token() -> None:
    """
    Twisted puts a request's C{repr} in its error logs: a query token is
    redacted there too.
    """
    request = BodyLimitedRequest(DummyChannel(), max_body=10)
    request.method = b"GET"
    request.uri = b"/sse?access_token=sekrit"
    assert "sekrit" not in repr(request)
    assert "access_token=[redacted]" in repr(request)


@pytest.mark.parametrize(
    "address,local",
    [
        (IPv4Address("TCP", "127.0.0.1", 1), True),
        (IPv4Address("TCP", "10.0.0.1", 1), False),
        (IPv6Address("TCP", "::1", 1), True),
        (IPv6Address("TCP", "fe80::1%eth0", 1), False),
        (IPv6Address("TCP", "::ffff:127.0.0.1", 1), True),
        (IPv6Address("TCP", "::ffff:192.0.2.1", 1), False),
        (IPv4Address("TCP", "not-an-address", 1), False),
        (UNIXAddress(b"/run/ssedemo.sock"), True),
    ],
)
def test_local_clients(address: object, local: bool) -> None:
    request = DummyRequest([])
    request.client = address
    assert is_local(request) is local
