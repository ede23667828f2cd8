"""
Tests for L{sse_twisted.app}: the routes, driven through Twisted's real HTTP
server over in-memory transports.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import pytest
from memory_http import Client, Connection
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.filepath import FilePath
from twisted.web.server import Site

from sse_twisted.app import Settings, SSEApp, package_version
from sse_twisted.fanout import choose_fanout
from sse_twisted.hub import Hub
from sse_twisted.log import MemoryLog
from sse_twisted.redis.client import BrokerUnavailable, RedisError
from sse_twisted.testing import parse

STATIC = FilePath(str(Path(__file__).parent.parent / "static"))
JSON = {"Content-Type": "application/json"}
CHANGED = '{"message": "Something changed"}'


def make_client(**settings: object) -> tuple[Client, Hub]:
    fanout = choose_fanout()
    hub = Hub(Clock(), MemoryLog(instance="t"), groups=fanout.groups)
    settings = {"static": STATIC, "fanout": fanout.name, **settings}
    app = SSEApp(hub, Settings(**settings))  # type: ignore[arg-type]
    return Client(app.site()), hub


def events(connection: Connection) -> list[tuple[str, str, str]]:
    return [
        (e.type, e.data, e.last_event_id)
        for e in parse(connection.response().body).events
    ]


def data(connection: Connection) -> list[str]:
    return [e[1] for e in events(connection)]


@pytest.fixture
def client() -> Client:
    return make_client()[0]


@pytest.fixture
def hub_client() -> tuple[Client, Hub]:
    return make_client()


# The page (served files are checked over real sockets in test_integration)


def test_unknown_path_is_404_json(client: Client) -> None:
    response = client.request("GET", "/nope")
    assert response.status == 404
    assert json.loads(response.body) == {"error": "not found"}


def test_no_directory_listings(tmp_path: Path) -> None:
    """
    A directory under C{--static} is not listed.
    """
    (tmp_path / "index.html").write_text("home")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "file.txt").write_text("x")
    client, _ = make_client(static=FilePath(str(tmp_path)))
    response = client.request("GET", "/sub/")
    assert (response.status, json.loads(response.body)) == (404, {"error": "not found"})


def test_static_path_escape_is_refused(client: Client) -> None:
    """
    A path that climbs out of the static directory finds nothing.
    """
    assert client.request("GET", "/../setup.py").status == 404
    assert client.request("GET", "/%2e%2e/setup.py").status == 404


# The stream


def test_stream_headers_and_greeting(client: Client) -> None:
    """
    C{GET /sse} answers 200 with the event-stream headers, tells the client
    its retry delay, greets it, and stays open.
    """
    stream = client.open("GET", "/sse")
    response = stream.response()
    assert response.status == 200
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    assert response.header("cache-control") == "no-cache"
    assert response.header("x-accel-buffering") == "no"
    assert response.header("content-encoding") is None
    assert response.header("access-control-allow-origin") is None
    assert parse(response.body).retry == 3000
    assert data(stream) == ['{"message": "Gotcha"}']
    assert not response.complete


def test_http10_stream_is_not_chunked(hub_client: tuple[Client, Hub]) -> None:
    """
    An HTTP/1.0 client gets the events unframed, and the end of the stream
    is the end of the connection.
    """
    client, hub = hub_client
    stream = client.open("GET", "/sse", version="HTTP/1.0")
    hub.publish("over 1.0")
    response = stream.response()
    assert response.header("transfer-encoding") is None
    assert [e.data for e in parse(response.body).events][-1] == "over 1.0"
    hub.close_all()
    assert stream.transport.disconnecting


def test_klein_routes_alone_serve_streams_too() -> None:
    """
    The site takes C{GET /sse} past Klein for speed, but the Klein routes
    on their own (to embed them in another site) serve streams the same.
    """
    hub = Hub(Clock(), MemoryLog(instance="t"), groups=choose_fanout().groups)
    client = Client(Site(SSEApp(hub, Settings(static=STATIC)).app.resource()))
    stream = client.open("GET", "/sse?topic=a")
    hub.publish("to a", topic="a")
    assert data(stream) == ['{"message": "Gotcha"}', "to a"]
    stream.disconnect()
    assert len(hub) == 0


def test_stream_behind_a_slow_client_is_dropped() -> None:
    """
    When the connection pauses the stream (its client reads too slowly) and
    more than the allowed backlog piles up, the connection is aborted and
    the stream leaves the registry; the other streams carry on.
    """
    client, hub = make_client(max_backlog=1000)
    slow, fast = client.open("GET", "/sse"), client.open("GET", "/sse")
    slow.transport.producer.pauseProducing()
    hub.publish("x" * 600)
    assert not slow.transport.disconnected
    slow.transport.producer.pauseProducing()  # still full: said again
    hub.publish("y" * 600)
    assert slow.transport.disconnected
    slow.disconnect()
    assert len(hub) == 1
    assert data(fast)[-2:] == ["x" * 600, "y" * 600]


def test_backlog_counts_per_pause() -> None:
    """
    A client that catches up (the connection resumes the stream) starts
    from a clean slate at the next pause.
    """
    client, hub = make_client(max_backlog=1000)
    stream = client.open("GET", "/sse")
    for _ in range(3):
        stream.transport.producer.pauseProducing()
        hub.publish("x" * 600)
        stream.transport.producer.resumeProducing()
    assert not stream.transport.disconnected
    assert len(data(stream)) == 4


def test_retry_is_configurable() -> None:
    client, _ = make_client(retry=750)
    assert parse(client.open("GET", "/sse").response().body).retry == 750


def test_head_on_stream_opens_nothing(hub_client: tuple[Client, Hub]) -> None:
    """
    C{HEAD /sse} answers with the headers and ends; no stream stays open.
    """
    client, hub = hub_client
    response = client.request("HEAD", "/sse")
    assert response.status == 200
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    assert len(hub) == 0


def test_api_post_reaches_every_stream(hub_client: tuple[Client, Hub]) -> None:
    """
    One C{POST /api} delivers C{Something changed}, with an id, to every
    open stream, and answers as C{/publish} does: that id, the number of
    streams and the topic.
    """
    client, _ = hub_client
    first, second = client.open("GET", "/sse"), client.open("GET", "/sse")
    response = client.request("POST", "/api", body=b'{"message": "Hey"}', headers=JSON)
    assert response.status == 200
    assert json.loads(response.body) == {
        "id": "t-1",
        "delivered": 2,
        "topic": "default",
    }
    for stream in (first, second):
        assert events(stream)[-1] == ("message", CHANGED, "t-1")


def test_disconnect_leaves_the_registry(hub_client: tuple[Client, Hub]) -> None:
    """
    A client that goes away is dropped at once; later events go to the
    others only, and nothing raises.
    """
    client, hub = hub_client
    leaving, staying = client.open("GET", "/sse"), client.open("GET", "/sse")
    assert len(hub) == 2
    leaving.disconnect()
    assert len(hub) == 1
    before = leaving.transport.value()
    assert hub.publish("after").delivered == 1
    assert leaving.transport.value() == before
    assert data(staying)[-1] == "after"


BAD_API_REQUESTS = [
    pytest.param("POST", "/api", b"{not json", JSON, 400, id="malformed-json"),
    pytest.param("POST", "/api", b"", JSON, 400, id="empty-body"),
    pytest.param("POST", "/api", b"NaN", JSON, 400, id="non-standard-json"),
    pytest.param("POST", "/api", b'"\xff"', JSON, 400, id="not-utf8"),
    pytest.param(
        "POST", "/api", b"{}", {"Content-Type": "text/plain"}, 415, id="text-plain"
    ),
    pytest.param("POST", "/api", b"{}", {}, 415, id="no-content-type"),
    pytest.param(
        "POST",
        "/api",
        b"{}",
        {"Content-Type": "application/json\xff"},
        415,
        id="content-type-not-utf8",
    ),
    pytest.param(
        "POST", "/publish", b"{}", {"Content-Type": "\xff"}, 415, id="publish-not-utf8"
    ),
    pytest.param(
        "POST", "/api", b'{"a": "' + b"x" * 70000 + b'"}', JSON, 413, id="too-big"
    ),
    pytest.param(
        "POST", "/api", b"[" + b"1," * 600_000 + b"1]", JSON, 413, id="megabyte"
    ),
    pytest.param("GET", "/api", b"", {}, 405, id="get-api"),
    pytest.param("PUT", "/api", b"{}", JSON, 405, id="put-api"),
    pytest.param("POST", "/sse", b"{}", JSON, 405, id="post-sse"),
    pytest.param("DELETE", "/", b"", {}, 405, id="delete-index"),
    pytest.param("POST", "/client.js", b"{}", JSON, 405, id="post-static-file"),
    pytest.param("GET", "/publish", b"", {}, 405, id="get-publish"),
    pytest.param("POST", "/nope/deeper", b"{}", JSON, 404, id="post-unknown"),
    pytest.param("GET", "/api/nope", b"", {}, 404, id="unknown-path"),
    pytest.param("GET", "/sse%FF", b"", {}, 400, id="path-not-utf8"),
    pytest.param("POST", "/publish%C3", b"{}", JSON, 400, id="post-path-not-utf8"),
    pytest.param("get", "/sse", b"", {}, 501, id="lowercase-get-sse"),
    pytest.param("post", "/api", b"{}", JSON, 501, id="lowercase-post-api"),
    pytest.param("Get", "/health", b"", {}, 501, id="mixed-case-get"),
]


@pytest.mark.parametrize("method,path,body,headers,status", BAD_API_REQUESTS)
def test_bad_requests_get_a_json_error_and_change_nothing(
    hub_client: tuple[Client, Hub],
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    """
    Bad input gets its 4xx and a short JSON error; no stream sees anything,
    and a later valid POST still broadcasts.
    """
    client, hub = hub_client
    stream = client.open("GET", "/sse")
    connection = client.open(method, path, body=body, headers=headers)
    response = connection.response()
    assert response.status == status
    assert response.header("content-type") == "application/json"
    assert set(json.loads(response.body)) == {"error"}
    if status == 405:
        assert response.header("allow")
    assert data(stream) == ['{"message": "Gotcha"}']
    assert hub.last_id is None
    assert client.request("POST", "/api", body=b"{}", headers=JSON).status == 200
    assert data(stream)[-1] == CHANGED


def test_json_suffix_types_are_json(client: Client) -> None:
    """
    Media types such as C{application/merge-patch+json} count as JSON, and
    parameters such as C{charset} are allowed.
    """
    for content_type in (
        "application/merge-patch+json",
        "application/json; charset=utf-8",
    ):
        response = client.request(
            "POST", "/api", body=b"{}", headers={"Content-Type": content_type}
        )
        assert response.status == 200, content_type


def test_max_body_is_configurable() -> None:
    client, _ = make_client(max_body=10)
    assert (
        client.request("POST", "/api", body=b"[1,2,3,4,5]", headers=JSON).status == 413
    )
    assert client.request("POST", "/api", body=b"[1,2,3,4]", headers=JSON).status == 200


# Topics and resume over HTTP


def test_topics_from_the_query(hub_client: tuple[Client, Hub]) -> None:
    client, hub = hub_client
    stream = client.open("GET", "/sse?topic=a&topic=b")
    hub.publish("to a", topic="a")
    hub.publish("to c", topic="c")
    hub.publish("to b", topic="b")
    hub.publish("to default")
    assert data(stream)[1:] == ["to a", "to b"]


@pytest.mark.parametrize(
    "query",
    [
        "topic=",
        "topic=a%0Ab",
        "topic=" + "x" * 65,
        "topic=a%20b",
        "topic=%C3%A9",
        "&".join(f"topic=t{n}" for n in range(33)),
    ],
)
def test_bad_topics_are_400(hub_client: tuple[Client, Hub], query: str) -> None:
    client, hub = hub_client
    response = client.request("GET", "/sse?" + query)
    assert response.status == 400
    assert "topic" in json.loads(response.body)["error"]
    assert len(hub) == 0


def test_last_event_id_header_resumes(hub_client: tuple[Client, Hub]) -> None:
    """
    A reconnect with C{Last-Event-ID} gets the missed events after the
    greeting, then live ones.
    """
    client, hub = hub_client
    for n in range(1, 4):
        hub.publish(f"e{n}")
    stream = client.open("GET", "/sse", headers={"Last-Event-ID": "t-1"})
    hub.publish("e4")
    assert data(stream) == ['{"message": "Gotcha"}', "e2", "e3", "e4"]


def test_last_event_id_query_resumes(hub_client: tuple[Client, Hub]) -> None:
    client, hub = hub_client
    for n in range(1, 4):
        hub.publish(f"e{n}")
    stream = client.open("GET", "/sse?lastEventId=t-2")
    assert data(stream)[1:] == ["e3"]


def test_header_wins_over_query(hub_client: tuple[Client, Hub]) -> None:
    """
    The header is what C{EventSource} sends on reconnect, so it is newer
    than an id fixed in the URL.
    """
    client, hub = hub_client
    for n in range(1, 4):
        hub.publish(f"e{n}")
    stream = client.open(
        "GET", "/sse?lastEventId=t-1", headers={"Last-Event-ID": "t-2"}
    )
    assert data(stream)[1:] == ["e3"]


def test_huge_last_event_id_gets_resync(hub_client: tuple[Client, Hub]) -> None:
    client, hub = hub_client
    hub.publish("e1")
    stream = client.open("GET", "/sse", headers={"Last-Event-ID": "t-1" + "1" * 5000})
    [_, (kind, payload, _)] = events(stream)
    assert kind == "resync"
    assert len(json.loads(payload)["lastEventId"]) == 256


def test_path_not_utf8_is_refused_without_a_traceback(client: Client) -> None:
    """
    A path that is not UTF-8 once unquoted gets a JSON 400, and the log no
    failure (Klein, left to it, logs a traceback for each).
    """
    with capturedLogs() as events:
        response = client.request("GET", "/sse%FF")
    assert (response.status, json.loads(response.body)) == (
        400,
        {"error": "the URL's path is not UTF-8"},
    )
    assert not [event for event in events if "log_failure" in event]
    assert client.request("GET", "/%C3%A9t%C3%A9").status == 404  # UTF-8: routed


def test_last_event_id_not_utf8_gets_resync(hub_client: tuple[Client, Hub]) -> None:
    """
    An id that is not UTF-8, in the header or the query, is an id the server
    does not know: the stream opens with a C{resync}, not an error.
    """
    client, hub = hub_client
    hub.publish("e1")
    for stream in (
        client.open("GET", "/sse", headers={"Last-Event-ID": "\xff-1"}),
        client.open("GET", "/sse?lastEventId=%FF-1"),
    ):
        [_, (kind, payload, _)] = events(stream)
        assert kind == "resync"
        assert json.loads(payload)["lastEventId"] == "\ufffd-1"
    assert len(hub) == 2


# Publish API


def publish(client: Client, body: object, **headers: str) -> tuple[int, object]:
    response = client.request(
        "POST",
        "/publish",
        body=json.dumps(body).encode(),
        headers={**JSON, **headers},
    )
    return response.status, json.loads(response.body)


def test_publish_json(hub_client: tuple[Client, Hub]) -> None:
    """
    C{POST /publish} publishes one event and answers with its id and the
    number of streams it reached; non-string data is sent as JSON.
    """
    client, _ = hub_client
    stream = client.open("GET", "/sse?topic=news")
    assert publish(
        client, {"data": {"a": [1, 2]}, "event": "update", "topic": "news"}
    ) == (
        200,
        {"id": "t-1", "delivered": 1, "topic": "news"},
    )
    assert events(stream)[-1] == ("update", '{"a": [1, 2]}', "t-1")


def test_publish_multiline_data_round_trips(hub_client: tuple[Client, Hub]) -> None:
    client, _ = hub_client
    stream = client.open("GET", "/sse")
    status, _ = publish(client, {"data": "one\ntwo\r\nthree\rfour"})
    assert status == 200
    assert data(stream)[-1] == "one\ntwo\nthree\nfour"


def test_publish_form(hub_client: tuple[Client, Hub]) -> None:
    client, _ = hub_client
    stream = client.open("GET", "/sse")
    response = client.request(
        "POST",
        "/publish",
        body=b"data=hello+world&event=note",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 200
    assert events(stream)[-1] == ("note", "hello world", "t-1")


@pytest.mark.parametrize(
    "body,message",
    [
        ({"data": "x", "event": "a\nb"}, "event"),
        ({"data": "x", "event": "a\x00b"}, "event"),
        ({"data": "x", "event": ""}, "event"),
        ({"data": "x", "event": 5}, "event"),
        ({"data": "x", "id": "a\nb"}, "id"),
        ({"data": "x", "topic": "bad topic"}, "topic"),
        ({"data": "\ud800"}, "Unicode"),
        ({"event": "x"}, "data"),
        ([1, 2], "object"),
    ],
)
def test_publish_refuses_bad_events(
    hub_client: tuple[Client, Hub], body: object, message: str
) -> None:
    """
    Event names with line breaks or NUL, ids, bad topics, missing data:
    400 with a clear message, and nothing published.
    """
    client, hub = hub_client
    stream = client.open("GET", "/sse")
    status, answer = publish(client, body)
    assert status == 400
    assert message in answer["error"]  # type: ignore[index]
    assert hub.last_id is None
    assert len(data(stream)) == 1


def test_publish_token_required() -> None:
    """
    With a token configured, a missing or wrong token gets 401 and
    publishes nothing; the right one publishes.
    """
    client, hub = make_client(publish_token=b"s3cret")
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic s3cret"},
    ):
        status, answer = publish(client, {"data": "x"}, **headers)
        assert status == 401
        assert "token" in answer["error"]  # type: ignore[index]
    assert hub.last_id is None
    assert publish(client, {"data": "x"}, Authorization="Bearer s3cret")[0] == 200
    assert publish(client, {"data": "x"}, Authorization="bearer s3cret")[0] == 200
    # /api stays open unless --protect-api.
    assert client.request("POST", "/api", body=b"{}", headers=JSON).status == 200


def test_unauthorized_carries_www_authenticate() -> None:
    client, _ = make_client(publish_token=b"s3cret")
    response = client.request("POST", "/publish", body=b"{}", headers=JSON)
    assert response.header("www-authenticate") == 'Bearer realm="ssedemo"'


def test_protect_api() -> None:
    client, hub = make_client(publish_token=b"s3cret", protect_api=True)
    assert client.request("POST", "/api", body=b"{}", headers=JSON).status == 401
    ok = client.request(
        "POST", "/api", body=b"{}", headers={**JSON, "Authorization": "Bearer s3cret"}
    )
    assert ok.status == 200
    assert hub.last_id == "t-1"


# CORS


def test_no_cors_headers_without_configuration(client: Client) -> None:
    response = client.request(
        "OPTIONS", "/publish", headers={"Origin": "https://a.example"}
    )
    assert response.header("access-control-allow-origin") is None


def test_cors_preflight_for_a_listed_origin() -> None:
    """
    A listed origin gets its preflight answered, with credentials allowed.
    """
    client, _ = make_client(cors_origins=("https://a.example",))
    response = client.request(
        "OPTIONS",
        "/publish",
        headers={
            "Origin": "https://a.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status == 204
    assert response.header("access-control-allow-origin") == "https://a.example"
    assert response.header("access-control-allow-credentials") == "true"
    assert "POST" in (response.header("access-control-allow-methods") or "")
    allowed = (response.header("access-control-allow-headers") or "").lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert response.header("vary") == "Origin"
    stream = client.open("GET", "/sse", headers={"Origin": "https://a.example"})
    assert (
        stream.response().header("access-control-allow-origin") == "https://a.example"
    )


def test_cors_other_origin_gets_nothing() -> None:
    client, _ = make_client(cors_origins=("https://a.example",))
    response = client.request("GET", "/health", headers={"Origin": "https://b.example"})
    assert response.header("access-control-allow-origin") is None
    stream = client.open("GET", "/sse", headers={"Origin": "https://b.example"})
    assert stream.response().header("access-control-allow-origin") is None


def test_cors_origin_not_utf8_gets_nothing() -> None:
    """
    An C{Origin} that is not UTF-8 is an origin not listed, not an error.
    """
    client, _ = make_client(cors_origins=("https://a.example",))
    stream = client.open("GET", "/sse", headers={"Origin": "https://\xff.example"})
    response = stream.response()
    assert response.status == 200
    assert response.header("access-control-allow-origin") is None


def test_cors_any_origin_without_credentials() -> None:
    client, _ = make_client(cors_origins=("*",))
    stream = client.open("GET", "/sse", headers={"Origin": "https://b.example"})
    response = stream.response()
    assert response.header("access-control-allow-origin") == "*"
    assert response.header("access-control-allow-credentials") is None


def test_health(hub_client: tuple[Client, Hub]) -> None:
    """
    C{/health} tells the open streams, the last event id, the seconds since
    the server started (by the reactor's clock) and ssedemo's version.
    """
    client, hub = hub_client
    client.open("GET", "/sse")
    hub.publish("x")
    clock = hub.clock
    assert isinstance(clock, Clock)
    clock.advance(12.25)
    response = client.request("GET", "/health")
    assert json.loads(response.body) == {
        "status": "ok",
        "streams": 1,
        "lastEventId": "t-1",
        "uptime": 12.25,
        "version": metadata.version("ssedemo"),
        "pid": os.getpid(),
        "fanout": choose_fanout().name,
    }


# With a shared event log (Redis): asynchronous receipts, 503, broker state


class SharedLog:
    """
    A shared log whose appends wait for the test to store or refuse them.
    """

    last_id = None
    available = True

    def __init__(self) -> None:
        self.appended: list[Deferred[str]] = []

    def append(
        self, data: str, event: str | None, topic: str, key: str | None = None
    ) -> Deferred[str]:
        stored: Deferred[str] = Deferred()
        self.appended.append(stored)
        return stored

    def replay(self, after: str, topics: object, write: object) -> Deferred[bool]:
        return Deferred()


def shared_client() -> tuple[Client, SharedLog]:
    shared = SharedLog()
    hub = Hub(Clock(), shared)
    return Client(SSEApp(hub, Settings(static=STATIC), broker=shared).site()), shared


@pytest.mark.parametrize("path,body", [("/publish", b'{"data": "x"}'), ("/api", b"{}")])
def test_shared_log_answers_once_stored(path: str, body: bytes) -> None:
    """
    With a shared log, a publish is answered once the log has stored the
    event, with its id and without a delivery count.
    """
    client, shared = shared_client()
    connection = client.open("POST", path, body=body, headers=JSON)
    assert connection.transport.value() == b""
    shared.appended[0].callback("1732981234567-0")
    answer = json.loads(connection.response().body)
    assert answer.pop("id") == "1732981234567-0"
    assert "delivered" not in answer


@pytest.mark.parametrize("error", [BrokerUnavailable("down"), RedisError("LOADING")])
def test_shared_log_unavailable_is_503(error: Exception) -> None:
    """
    A publish the shared log could not store is answered 503 with a JSON
    error and Retry-After.
    """
    client, shared = shared_client()
    connection = client.open("POST", "/publish", body=b'{"data": "x"}', headers=JSON)
    shared.appended[0].errback(error)
    response = connection.response()
    assert response.status == 503
    assert response.headers["retry-after"] == "1"
    assert "unavailable" in json.loads(response.body)["error"]


def test_health_reports_the_broker() -> None:
    client, shared = shared_client()
    assert json.loads(client.request("GET", "/health").body)["broker"] == "ok"
    shared.available = False
    assert json.loads(client.request("GET", "/health").body)["broker"] == "down"
    plain = make_client()[0]
    assert "broker" not in json.loads(plain.request("GET", "/health").body)


def test_version_of_a_package_never_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    package_version.cache_clear()
    try:
        assert package_version() == "unknown"
    finally:
        package_version.cache_clear()


def test_version_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The installed version is looked up once per process: a worker forked
    after its parent read it does not search the installed packages again.
    """
    package_version.cache_clear()
    found = package_version()
    monkeypatch.setattr(metadata, "version", lambda name: "changed")
    assert package_version() == found
    package_version.cache_clear()
