"""
Authorization through the routes: streams and publishing with JWTs, public
topics, expiring tokens, and publishing safe by default. Driven through
Twisted's real HTTP server over in-memory transports, on a fake clock.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from memory_http import Client, Connection
from test_app import JSON, STATIC
from tokens import SECRET, grants
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.web.server import Site

from sse_twisted.app import Settings, SSEApp
from sse_twisted.auth.gate import Grant, PublicTopics
from sse_twisted.auth.jwt import JWTGate, Verifier, load_key
from sse_twisted.hub import Hub
from sse_twisted.log import MemoryLog
from sse_twisted.testing import parse

NOW = 1_800_000_000
GOTCHA = '{"message": "Gotcha"}'
INVALID = 'Bearer error="invalid_token"'


class Server:
    """
    The site with JWTs on, its hub and its clock.
    """

    def __init__(
        self, public: tuple[str, ...] = (), peer: str = "127.0.0.1", **settings: Any
    ) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.hub = Hub(self.clock, MemoryLog(instance="t"))
        verifier = Verifier(load_key(SECRET, "HS256"), "HS256", self.clock)
        settings.setdefault("gate", PublicTopics(public, JWTGate(verifier)))
        if settings["gate"] is None:
            del settings["gate"]
        settings.setdefault("verifier", verifier)
        self.site: Site = SSEApp(self.hub, Settings(static=STATIC, **settings)).site()
        self.client = Client(self.site, peer)

    def stream(self, path: str, token: str | None = None, **headers: str) -> Connection:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.open("GET", path, headers=headers)

    def publish(
        self, body: dict[str, Any], token: str | None = None
    ) -> tuple[int, Any]:
        headers = dict(JSON)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = self.client.request(
            "POST", "/publish", body=json.dumps(body).encode(), headers=headers
        )
        return response.status, json.loads(response.body)


def events(connection: Connection) -> list[tuple[str, str]]:
    return [(e.type, e.data) for e in parse(connection.response().body).events]


def assert_refused(
    connection: Connection, status: int, challenge: str | None, error: str
) -> None:
    response = connection.response()
    assert response.status == status
    assert response.header("www-authenticate") == challenge
    assert response.header("content-type") == "application/json"
    assert json.loads(response.body) == {"error": error}
    assert response.complete


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_no_token_is_401_and_nothing_subscribed(method: str) -> None:
    server = Server()
    connection = server.client.open(method, "/sse?topic=news")
    response = connection.response()
    assert response.status == 401
    assert response.header("www-authenticate") == 'Bearer realm="ssedemo"'
    if method == "GET":
        assert json.loads(response.body) == {
            "error": "a token is required for these topics"
        }
    assert len(server.hub) == 0
    assert server.hub.publish("x", topic="news").delivered == 0


@pytest.mark.parametrize(
    "token,error",
    [
        (grants(["news"], exp=NOW - 1), "the token has expired"),
        (grants(["news"], exp=NOW), "the token has expired"),
        (grants(["news"], nbf=NOW + 60), "the token is not valid yet"),
        ("x" * 8192, "the token is not valid: Not enough segments"),
    ],
)
def test_bad_token_is_401_invalid_token(token: str, error: str) -> None:
    server = Server()
    assert_refused(server.stream("/sse?topic=news", token), 401, INVALID, error)
    assert len(server.hub) == 0


@pytest.mark.parametrize("place", ["header", "cookie", "query"])
def test_8kb_garbage_token_anywhere_is_refused(place: str) -> None:
    server = Server()
    garbage = "Zm9v" * 2048
    headers = {"Cookie": f"sse_token={garbage}"} if place == "cookie" else {}
    path = f"/sse?access_token={garbage}" if place == "query" else "/sse"
    token = garbage if place == "header" else None
    connection = server.stream(path, token, **headers)
    assert connection.response().status == 401
    assert connection.response().header("www-authenticate") == INVALID
    assert len(server.hub) == 0


def test_head_is_authorized_as_get() -> None:
    server = Server()
    good = grants(["news"])
    head = server.client.open(
        "HEAD", "/sse?topic=news", headers={"Authorization": f"Bearer {good}"}
    )
    response = head.response()
    assert response.status == 200
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    assert (response.body, response.complete) == (b"", True)
    forbidden = server.client.open(
        "HEAD", "/sse?topic=other", headers={"Authorization": f"Bearer {good}"}
    )
    assert forbidden.response().status == 403
    assert len(server.hub) == 0


def test_token_must_cover_every_topic() -> None:
    server = Server()
    token = grants(["user.42.*", "news"])
    assert_refused(
        server.stream("/sse?topic=news&topic=user.420", token),
        403,
        None,
        "the token does not allow subscribing to user.420",
    )
    assert len(server.hub) == 0
    stream = server.stream("/sse?topic=news&topic=user.42.orders", token)
    server.hub.publish("order", topic="user.42.orders")
    server.hub.publish("other", topic="user.43.orders")
    assert events(stream) == [("message", GOTCHA), ("message", "order")]


def test_public_topics_need_no_token() -> None:
    """
    Public topics are open to anyone, even with a bad token; every other
    topic, C{default} included, needs a token.
    """
    server = Server(public=("default", "news.*"))
    assert server.stream("/sse").response().status == 200
    assert server.stream("/sse?topic=news.today", "bad").response().status == 200
    assert server.stream("/sse?topic=news&topic=default").response().status == 401
    assert len(server.hub) == 2
    closed = Server()
    assert closed.stream("/sse").response().status == 401


def test_header_wins_over_cookie() -> None:
    server = Server()
    good, bad = grants(["news"]), grants(["other"])
    refused = server.stream("/sse?topic=news", bad, Cookie=f"sse_token={good}")
    assert refused.response().status == 403
    allowed = server.stream("/sse?topic=news", good, Cookie=f"sse_token={bad}")
    assert allowed.response().status == 200
    by_cookie = server.stream(
        f"/sse?topic=news&access_token={bad}", Cookie=f"sse_token={good}"
    )
    assert by_cookie.response().status == 200


def test_resuming_never_replays_ungranted_topics() -> None:
    """
    A client that resumes gets only the events of the topics its token
    covers; asking for others too is refused with nothing sent.
    """
    server = Server()
    first = server.hub.publish("start", topic="user.1.a").id
    for topic in ["user.1.a", "user.2.a", "user.1.b", "secret"]:
        server.hub.publish(f"on {topic}", topic=topic)
    token = grants(["user.1.*"])
    greedy = server.stream(
        "/sse?topic=user.1.a&topic=user.2.a", token, **{"Last-Event-ID": first}
    )
    assert greedy.response().status == 403
    assert b"on user" not in greedy.response().body
    resumed = server.stream(
        "/sse?topic=user.1.a&topic=user.1.b", token, **{"Last-Event-ID": first}
    )
    assert [data for _, data in events(resumed)] == [
        GOTCHA,
        "on user.1.a",
        "on user.1.b",
    ]


def test_stream_is_warned_then_ended_when_its_token_expires() -> None:
    """
    Thirty seconds before C{exp} the stream gets C{token-expiring} with the
    C{exp}; at C{exp} it ends and leaves the hub.
    """
    server = Server()
    stream = server.stream("/sse?topic=news", grants(["news"], exp=NOW + 100, iat=NOW))
    server.clock.advance(69.9)
    assert [t for t, _ in events(stream)] == ["message"]
    server.clock.advance(0.1)
    assert events(stream)[-1] == ("token-expiring", json.dumps({"exp": NOW + 100}))
    server.clock.advance(29.9)
    assert not stream.response().complete
    assert len(server.hub) == 1
    server.clock.advance(0.1)
    assert stream.response().complete
    assert len(server.hub) == 0


def test_short_token_is_warned_at_half_its_life() -> None:
    server = Server()
    stream = server.stream("/sse?topic=news", grants(["news"], exp=NOW + 20))
    server.clock.advance(9.9)
    assert len(events(stream)) == 1
    server.clock.advance(0.1)
    assert events(stream)[-1][0] == "token-expiring"


def test_closed_stream_leaves_no_timers() -> None:
    server = Server()
    stream = server.stream("/sse?topic=news", grants(["news"], exp=NOW + 100))
    server.clock.advance(1)
    timers = [call.func.__name__ for call in server.clock.getDelayedCalls()]
    assert timers == ["_fire"]  # the stream's warning, then its end
    stream.disconnect()
    # Only the hub's log line is left to come.
    remaining = [call.func.__name__ for call in server.clock.getDelayedCalls()]
    assert remaining == ["_log_streams"]
    assert len(server.hub) == 0


def test_publish_needs_a_covering_token() -> None:
    server = Server(publish_token=b"static")
    stream = server.stream("/sse?topic=user.1.orders", grants(["*"]))
    assert server.publish({"data": "x", "topic": "user.1.orders"}) == (
        401,
        {"error": "a bearer token is required"},
    )
    assert server.publish({"data": "x", "topic": "user.1.orders"}, "bad")[0] == 401
    assert server.publish(
        {"data": "x", "topic": "user.2.orders"}, grants(publish=["user.1.*"])
    ) == (
        403,
        {"error": "the token does not allow publishing to user.2.orders"},
    )
    assert server.hub.last_id is None
    status, receipt = server.publish(
        {"data": "x", "topic": "user.1.orders"}, grants(publish=["user.1.*"])
    )
    assert (status, receipt["delivered"]) == (200, 1)
    assert server.publish({"data": "y", "topic": "any"}, "static")[0] == 200
    assert [d for _, d in events(stream)] == [GOTCHA, "x"]


def test_protected_api_needs_publish_on_default() -> None:
    server = Server(protect_api=True)

    def api(token: str | None) -> int:
        headers = dict(JSON)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return server.client.request("POST", "/api", body=b"{}", headers=headers).status

    assert api(None) == 401
    assert api(grants(publish=["other"])) == 403
    assert api(grants(publish=["default"])) == 200


def test_publishing_is_for_local_clients_by_default() -> None:
    """
    Without any token configured, only loopback clients may publish; others
    get 403 with a JSON error that says how to configure one. The demo's
    C{/api} stays open.
    """
    for peer in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"]:
        server = Server(peer=peer, gate=None, verifier=None)
        assert server.publish({"data": "x"})[0] == 200, peer
    server = Server(peer="10.1.2.3", gate=None, verifier=None)
    status, body = server.publish({"data": "x"})
    assert status == 403
    assert "--publish-token-file" in body["error"] and "--publish-open" in body["error"]
    assert server.hub.last_id is None
    assert server.client.request("POST", "/api", body=b"{}", headers=JSON).status == 200
    opened = Server(peer="10.1.2.3", gate=None, verifier=None, publish_open=True)
    assert opened.publish({"data": "x"})[0] == 200


class Broken:
    """
    A gate whose answer fails with a bug, not a refusal.
    """

    def authorize(self, request: object, topics: object) -> Deferred[Grant]:
        return fail(RuntimeError("a bug"))


def test_a_gate_that_breaks_lets_no_one_in() -> None:
    """
    A gate that fails unexpectedly is logged, and the client is told to
    come back later, not let in.
    """
    with capturedLogs() as logged:
        server = Server(gate=Broken(), retry=1000)
        stream = server.stream("/sse?topic=news")
    response = stream.response()
    assert (response.status, response.complete) == (200, True)
    parsed = parse(response.body)
    assert parsed.events == [] and 1000 <= (parsed.retry or 0) <= 2000
    assert len(server.hub) == 0
    assert [e["log_format"] for e in logged if "log_failure" in e] == [
        "authorization failed"
    ]
