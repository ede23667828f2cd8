"""
Forward auth against a real HTTP application on 127.0.0.1: what it is sent,
how its answers are passed on, and what happens when it does not answer.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from typing import Any

import pytest
import pytest_twisted
from memory_http import Client, Connection
from test_app import STATIC
from tokens import SECRET, grants
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from sse_twisted.app import Settings, SSEApp
from sse_twisted.auth.forward import MAX_BODY, ForwardAuthGate
from sse_twisted.auth.gate import FirstThen, Grant, PublicTopics
from sse_twisted.auth.jwt import JWTGate, Verifier, load_key
from sse_twisted.hub import Hub
from sse_twisted.log import MemoryLog
from sse_twisted.overload import ClientLimit
from sse_twisted.testing import parse


class Application(Resource):
    """
    The application's auth endpoint: records each request and answers with
    C{code} and C{headers}, or never (C{code=None}).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.code: int | None = 200
        self.headers: dict[str, str] = {}
        self.body = b"decided"
        self.seen: list[Request] = []
        self.arrived: defer.Deferred[Request] = defer.Deferred()
        self.left: defer.Deferred[Request] = defer.Deferred()
        self.connections = 0

    def _leave(self, request: Request) -> None:
        self.left, left = defer.Deferred(), self.left
        left.callback(request)

    def render(self, request: Request) -> bytes | int:
        self.seen.append(request)
        self.arrived, arrived = defer.Deferred(), self.arrived
        arrived.callback(request)
        if self.code is None:
            request.notifyFinish().addErrback(lambda _: self._leave(request))
            return NOT_DONE_YET
        request.setResponseCode(self.code)
        for name, value in self.headers.items():
            request.setHeader(name, value)
        return self.body


class Recording:
    """
    Keeps the Deferred of each decision, so that a test can wait for it.
    """

    def __init__(self, gate: Any) -> None:
        self.gate = gate
        self.pending: list[defer.Deferred[Grant]] = []

    def authorize(self, request: IRequest, topics: Sequence[str]) -> Any:
        decision = self.gate.authorize(request, topics)
        if isinstance(decision, defer.Deferred):
            self.pending.append(decision)
        return decision

    def decided(self) -> defer.Deferred[None]:
        done: defer.Deferred[None] = defer.Deferred()
        self.pending[-1].addBoth(lambda result: done.callback(None) or result)
        return done


class Setup:
    def __init__(
        self,
        reactor: Any,
        port: IListeningPort,
        app: Application,
        jwt: bool,
        peer: str,
        concurrency: int,
    ) -> None:
        self.app = app
        self.clock = Clock()
        self.hub = Hub(self.clock, MemoryLog(instance="t"))
        self.forward = ForwardAuthGate(
            f"http://127.0.0.1:{port.getHost().port}/auth",  # type: ignore[attr-defined]
            reactor,
            timeout=5,
            clock=self.clock,
            concurrency=concurrency,
        )
        gate: Any = self.forward
        if jwt:
            verifier = Verifier(load_key(SECRET, "HS256"), "HS256", self.clock)
            gate = FirstThen(JWTGate(verifier), gate)
        self.gate = Recording(PublicTopics(["default"], gate))
        site = SSEApp(
            self.hub, Settings(static=STATIC, retry=1000, gate=self.gate)
        ).site()
        self.client = Client(site, peer)

    def stream(self, path: str, **headers: str) -> Connection:
        return self.client.open("GET", path, headers=headers)


@pytest.fixture
def setup(reactor: Any, request: pytest.FixtureRequest) -> Generator[Any, None, None]:
    """
    Start the application on 127.0.0.1 and build a site that asks it.
    """
    app = Application()
    site = Site(app)
    build = site.buildProtocol

    def counted(address: Any) -> Any:
        app.connections += 1
        return build(address)

    site.buildProtocol = counted  # type: ignore[method-assign]
    port = pytest_twisted.blockon(
        TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    )
    options = getattr(request, "param", {})
    made = Setup(
        reactor,
        port,
        app,
        options.get("jwt", False),
        options.get("peer", "192.0.2.7"),
        options.get("concurrency", 32),
    )
    yield made
    pytest_twisted.blockon(made.forward.close())
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


def body(connection: Connection) -> Any:
    return json.loads(connection.response().body)


@pytest_twisted.inlineCallbacks
def test_application_is_sent_the_client_and_its_topics(
    setup: Setup,
) -> Generator[Any, Any, None]:
    """
    The application gets the client's C{Cookie} and C{Authorization}, its
    address in C{X-Forwarded-For} (whatever the client sent there), and the
    non-public topics; its C{2xx} lets the stream in.
    """
    stream = setup.stream(
        "/sse?topic=default&topic=orders&topic=user.1",
        Cookie="session=abc",
        Authorization="Basic dXNlcjpwdw==",
        **{"X-Forwarded-For": "6.6.6.6"},
    )
    assert stream.transport.value() == b""
    yield setup.gate.decided()
    asked = setup.app.seen[0]
    assert asked.method == b"GET" and asked.path == b"/auth"
    headers = asked.requestHeaders
    assert headers.getRawHeaders("Cookie") == ["session=abc"]
    assert headers.getRawHeaders("Authorization") == ["Basic dXNlcjpwdw=="]
    assert headers.getRawHeaders("X-Forwarded-For") == ["192.0.2.7"]
    assert headers.getRawHeaders("X-SSE-Topics") == ["orders,user.1"]
    assert stream.response().status == 200
    setup.hub.publish("for orders", topic="orders")
    assert [e.data for e in parse(stream.response().body).events][-1] == "for orders"
    assert len(setup.hub) == 1


@pytest_twisted.inlineCallbacks
def test_public_topics_are_not_asked_about(setup: Setup) -> Generator[Any, Any, None]:
    stream = setup.stream("/sse")
    assert stream.response().status == 200
    assert setup.app.seen == [] and setup.gate.pending == []
    yield defer.succeed(None)


@pytest_twisted.inlineCallbacks
def test_connections_are_kept_and_reused(setup: Setup) -> Generator[Any, Any, None]:
    for _ in range(3):
        setup.stream("/sse?topic=orders")
        yield setup.gate.decided()
    assert len(setup.app.seen) == 3
    assert setup.app.connections == 1
    assert len(setup.hub) == 3


@pytest_twisted.inlineCallbacks
def test_answer_limits_the_topics(setup: Setup) -> Generator[Any, Any, None]:
    """
    A C{2xx} with C{X-SSE-Topics} allows only the topics its patterns match.
    """
    setup.app.headers = {"X-SSE-Topics": "user.1.*, news"}
    allowed = setup.stream("/sse?topic=user.1.orders&topic=news")
    yield setup.gate.decided()
    assert allowed.response().status == 200
    refused = setup.stream("/sse?topic=user.1.orders&topic=user.2.orders")
    yield setup.gate.decided()
    assert refused.response().status == 403
    assert body(refused) == {"error": "not allowed to subscribe to user.2.orders"}
    assert len(setup.hub) == 1


@pytest_twisted.inlineCallbacks
def test_401_and_403_are_passed_on(setup: Setup) -> Generator[Any, Any, None]:
    setup.app.code = 401
    setup.app.headers = {"WWW-Authenticate": 'Bearer realm="app"'}
    unauthorized = setup.stream("/sse?topic=orders")
    yield setup.gate.decided()
    response = unauthorized.response()
    assert (response.status, response.header("www-authenticate")) == (
        401,
        'Bearer realm="app"',
    )
    assert body(unauthorized) == {"error": "not allowed by the application"}
    setup.app.code = 403
    forbidden = setup.stream("/sse?topic=orders")
    yield setup.gate.decided()
    assert forbidden.response().status == 403
    assert len(setup.hub) == 0


def assert_come_back_later(connection: Connection) -> None:
    response = connection.response()
    assert response.status == 200
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    assert response.complete
    stream = parse(response.body)
    assert stream.events == []
    assert stream.retry is not None and 1000 <= stream.retry <= 2000


@pytest.mark.parametrize("code", [500, 302, 404, 429])
@pytest_twisted.inlineCallbacks
def test_other_answers_are_no_decision(
    setup: Setup, code: int
) -> Generator[Any, Any, None]:
    """
    Any other status tells the client to come back later (C{200}, a
    C{retry:} of one to two intervals, end): never let in, never a status
    that would stop C{EventSource} for good.
    """
    setup.app.code = code
    stream = setup.stream("/sse?topic=orders")
    yield setup.gate.decided()
    assert_come_back_later(stream)
    assert len(setup.hub) == 0


@pytest_twisted.inlineCallbacks
def test_no_answer_in_time_is_no_decision(setup: Setup) -> Generator[Any, Any, None]:
    setup.app.code = None
    stream = setup.stream("/sse?topic=orders")
    asked = yield setup.app.arrived
    setup.clock.advance(4.9)
    assert stream.transport.value() == b""
    setup.clock.advance(0.1)
    yield setup.gate.decided()
    assert_come_back_later(stream)
    assert len(setup.hub) == 0
    assert (yield setup.app.left) is asked


@pytest_twisted.inlineCallbacks
def test_unreachable_application_is_no_decision(
    reactor: Any,
) -> Generator[Any, Any, None]:
    port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Site(Resource())
    )
    url = f"http://127.0.0.1:{port.getHost().port}/auth"
    yield port.stopListening()
    gate = Recording(ForwardAuthGate(url, reactor))
    hub = Hub(Clock())
    client = Client(SSEApp(hub, Settings(static=STATIC, retry=1000, gate=gate)).site())
    stream = client.open("GET", "/sse")
    yield gate.decided()
    assert_come_back_later(stream)


@pytest_twisted.inlineCallbacks
def test_client_that_leaves_while_waiting_is_forgotten(
    setup: Setup,
) -> Generator[Any, Any, None]:
    """
    A client that disconnects before the application answers is never
    subscribed, and the question is withdrawn.
    """
    setup.app.code = None
    stream = setup.stream("/sse?topic=orders")
    asked = yield setup.app.arrived
    stream.disconnect()
    yield setup.gate.decided()
    assert (yield setup.app.left) is asked
    assert len(setup.hub) == 0
    assert stream.transport.value() == b""


@pytest.mark.parametrize("setup", [{"jwt": True}], indirect=True)
@pytest_twisted.inlineCallbacks
def test_covering_jwt_needs_no_question(setup: Setup) -> Generator[Any, Any, None]:
    """
    With JWTs too, a token that covers the topics lets the stream in at
    once; otherwise the application decides.
    """
    allowed = setup.stream(
        "/sse?topic=orders", Authorization=f"Bearer {grants(['orders'])}"
    )
    assert allowed.response().status == 200
    assert setup.gate.pending == []
    asked = setup.stream(
        "/sse?topic=orders", Authorization=f"Bearer {grants(['other'])}"
    )
    yield setup.gate.decided()
    assert asked.response().status == 200
    assert len(setup.app.seen) == 1
    assert len(setup.hub) == 2


@pytest_twisted.inlineCallbacks
def test_head_is_asked_about_as_get(setup: Setup) -> Generator[Any, Any, None]:
    setup.app.code = 403
    refused = setup.client.open("HEAD", "/sse?topic=orders")
    yield setup.gate.decided()
    assert refused.response().status == 403
    setup.app.code = 200
    allowed = setup.client.open("HEAD", "/sse?topic=orders")
    yield setup.gate.decided()
    response = allowed.response()
    assert (response.status, response.complete) == (200, True)
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    assert len(setup.app.seen) == 2 and len(setup.hub) == 0


@pytest_twisted.inlineCallbacks
def test_long_answer_is_cut_off(setup: Setup) -> Generator[Any, Any, None]:
    """
    An answer with an overlong body is decided on its status; the body is
    not read past L{MAX_BODY}.
    """
    setup.app.body = b"x" * (MAX_BODY * 4)
    stream = setup.stream("/sse?topic=orders")
    yield setup.gate.decided()
    assert stream.response().status == 200
    assert len(setup.hub) == 1


@pytest_twisted.inlineCallbacks
def test_failure_and_recovery_are_logged_once_each(
    setup: Setup,
) -> Generator[Any, Any, None]:
    with capturedLogs() as events:
        for code in (500, 502, 200, 200):
            setup.app.code = code
            setup.stream("/sse?topic=orders")
            yield setup.gate.decided()
    lines = [
        formatEvent(e) for e in events if e["log_namespace"].endswith("ForwardAuthGate")
    ]
    assert len(lines) == 2
    assert lines[0].startswith("the auth service gave no usable answer (status 500)")
    assert lines[1] == "the auth service answers again"


@pytest.mark.parametrize("setup", [{"concurrency": 2}], indirect=True)
@pytest_twisted.inlineCallbacks
def test_questions_wait_their_turn(setup: Setup) -> Generator[Any, Any, None]:
    """
    No more questions than the limit are asked at once; the others wait,
    and the wait counts in their timeout.
    """
    setup.app.code = None
    first = setup.stream("/sse?topic=orders")
    yield setup.app.arrived
    second = setup.stream("/sse?topic=orders")
    yield setup.app.arrived
    setup.clock.advance(1)
    third = setup.stream("/sse?topic=orders")
    assert (setup.forward._turns.tokens, len(setup.forward._turns.waiting)) == (0, 1)
    assert len(setup.app.seen) == 2
    arrived = setup.app.arrived
    setup.clock.advance(4)
    for stream in (first, second):
        assert_come_back_later(stream)
    yield arrived
    assert len(setup.app.seen) == 3
    setup.clock.advance(1)
    assert_come_back_later(third)
    assert len(setup.hub) == 0


@pytest_twisted.inlineCallbacks
def test_full_server_asks_nobody(setup: Setup) -> Generator[Any, Any, None]:
    """
    Over C{--max-clients}, a stream is turned away before the application
    is asked.
    """
    limit = ClientLimit(setup.hub.__len__, 1, clock=setup.clock, retry=1000)
    site = SSEApp(
        setup.hub, Settings(static=STATIC, retry=1000, gate=setup.gate), limit=limit
    ).site()
    client = Client(site)
    first = client.open("GET", "/sse?topic=orders")
    yield setup.gate.decided()
    assert first.response().status == 200
    turned_away = client.open("GET", "/sse?topic=orders")
    assert_come_back_later(turned_away)
    assert len(setup.app.seen) == 1
    assert len(setup.gate.pending) == 1
