"""
Tests for live state through HTTP: C{?rewind=}, C{?snapshot=1} and the
C{key} of C{POST /publish}, with their errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from memory_http import Client, Connection
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath

from sse_twisted.app import Settings, SSEApp
from sse_twisted.fanout import choose_fanout
from sse_twisted.hub import Hub
from sse_twisted.log import MemoryLog
from sse_twisted.ops.metrics import Metrics
from sse_twisted.testing import parse

STATIC = FilePath(str(Path(__file__).parent.parent / "static"))
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def make_client(max_keys: int = 10_000, **settings: object) -> tuple[Client, Hub]:
    fanout = choose_fanout()
    clock = Clock()
    log = MemoryLog(instance="t", max_keys=max_keys, clock=clock)
    hub = Hub(clock, log, groups=fanout.groups)
    app = SSEApp(hub, Settings(static=STATIC, fanout=fanout.name, **settings))  # type: ignore[arg-type]
    return Client(app.site()), hub


def events(connection: Connection) -> list[tuple[str, str, str]]:
    return [
        (e.type, e.data, e.last_event_id)
        for e in parse(connection.response().body).events
    ][1:]


def publish(client: Client, body: object) -> tuple[int, dict[str, object]]:
    response = client.request(
        "POST", "/publish", body=json.dumps(body).encode(), headers=JSON
    )
    return response.status, json.loads(response.body)


@pytest.fixture
def hub_client() -> tuple[Client, Hub]:
    return make_client()


def test_rewind_on_first_connect(hub_client: tuple[Client, Hub]) -> None:
    """
    C{?rewind=2} starts after the greeting with the last two events.
    """
    client, hub = hub_client
    for n in range(4):
        hub.publish(f"e{n}", event="tick")
    stream = client.open("GET", "/sse?rewind=2")
    hub.publish("e4")
    assert events(stream) == [
        ("tick", "e2", "t-3"),
        ("tick", "e3", "t-4"),
        ("message", "e4", "t-5"),
    ]


def test_rewind_by_minutes(hub_client: tuple[Client, Hub]) -> None:
    client, hub = hub_client
    hub.publish("e0")
    stream = client.open("GET", "/sse?rewind=60m")
    assert events(stream) == [("message", "e0", "t-1")]


@pytest.mark.parametrize("header", [True, False])
def test_rewind_is_ignored_when_resuming(
    hub_client: tuple[Client, Hub], header: bool
) -> None:
    client, hub = hub_client
    for n in range(4):
        hub.publish(f"e{n}")
    if header:
        stream = client.open("GET", "/sse?rewind=3", headers={"Last-Event-ID": "t-3"})
    else:
        stream = client.open("GET", "/sse?rewind=3&lastEventId=t-3")
    assert [e[1] for e in events(stream)] == ["e3"]


def test_rewind_is_ignored_when_the_resumed_id_gets_resync(
    hub_client: tuple[Client, Hub],
) -> None:
    client, hub = hub_client
    for n in range(4):
        hub.publish(f"e{n}")
    stream = client.open("GET", "/sse?rewind=3", headers={"Last-Event-ID": "x-1"})
    assert [e[0] for e in events(stream)] == ["resync"]


BAD_STARTS = [
    "rewind=0",
    "rewind=101",
    "rewind=-1",
    "rewind=5h",
    "rewind=61m",
    "rewind=3601s",
    "rewind=0s",
    "rewind=01",
    "rewind=1.5",
    "rewind=x",
    "rewind=",
    "rewind",
    "rewind=%2B5",
    "rewind=5&rewind=5",
    "snapshot=0",
    "snapshot=true",
    "snapshot=",
    "snapshot=1&snapshot=1",
    "snapshot",
    "rewind=5&snapshot=1",
]


@pytest.mark.parametrize("query", BAD_STARTS)
@pytest.mark.parametrize("resuming", [False, True])
def test_bad_rewind_or_snapshot_is_400(
    hub_client: tuple[Client, Hub], query: str, resuming: bool
) -> None:
    """
    A malformed, out-of-range or repeated C{rewind} or C{snapshot}, or
    both, is a C{400} with a JSON error, with or without an id; no stream
    opens.
    """
    client, hub = hub_client
    hub.publish("e0")
    headers = {"Last-Event-ID": "t-1"} if resuming else {}
    response = client.request("GET", f"/sse?{query}", headers=headers)
    assert response.status == 400
    assert response.header("content-type") == "application/json"
    error = json.loads(response.body)["error"]
    assert "rewind" in error or "snapshot" in error
    assert len(hub) == 0


@pytest.mark.parametrize(
    "query", ["rewind=1", "rewind=100", "rewind=3600s", "rewind=1s"]
)
def test_good_rewinds_open(hub_client: tuple[Client, Hub], query: str) -> None:
    client, hub = hub_client
    client.open("GET", f"/sse?{query}")
    assert len(hub) == 1


def test_snapshot_through_http(hub_client: tuple[Client, Hub]) -> None:
    """
    Keyed publishes through C{/publish} (JSON and form) become retained
    values; C{?snapshot=1} starts with them, then the C{snapshot} event,
    then live events.
    """
    client, _ = hub_client
    assert publish(client, {"data": {"p": 1}, "topic": "prices", "key": "AAPL"}) == (
        200,
        {"id": "t-1", "delivered": 0, "topic": "prices"},
    )
    form = client.request(
        "POST", "/publish", body=b"data=2&topic=prices&key=MSFT&event=q", headers=FORM
    )
    assert form.status == 200
    publish(client, {"data": None, "topic": "prices", "key": "GONE"})
    stream = client.open("GET", "/sse?topic=prices&snapshot=1")
    publish(client, {"data": None, "topic": "prices", "key": "AAPL"})
    assert events(stream) == [
        ("message", '{"p": 1}', "t-1"),
        ("q", "2", "t-2"),
        ("snapshot", '{"count": 2}', "t-3"),
        ("message", "null", "t-4"),
    ]
    again = client.open("GET", "/sse?topic=prices&snapshot=1")
    assert events(again) == [
        ("q", "2", "t-2"),
        ("snapshot", '{"count": 1}', "t-4"),
    ]


@pytest.mark.parametrize(
    "key", [5, 1.5, True, ["a"], {"a": 1}, "", "k" * 129, "a\nb", "a\rb", "a\x00b"]
)
def test_bad_keys_are_400(hub_client: tuple[Client, Hub], key: object) -> None:
    client, hub = hub_client
    status, answer = publish(client, {"data": "x", "key": key})
    assert status == 400
    assert "key" in answer["error"]  # type: ignore[operator]
    assert hub.last_id is None


def test_bad_form_key_is_400(hub_client: tuple[Client, Hub]) -> None:
    client, hub = hub_client
    response = client.request("POST", "/publish", body=b"data=x&key=", headers=FORM)
    assert response.status == 400
    assert hub.last_id is None


def test_a_new_key_beyond_max_keys_is_507_and_delivers_nothing() -> None:
    client, _ = make_client(max_keys=1)
    stream = client.open("GET", "/sse")
    assert publish(client, {"data": "1", "key": "a"})[0] == 200
    status, answer = publish(client, {"data": "2", "key": "b"})
    assert status == 507
    assert "1 keys" in answer["error"]  # type: ignore[operator]
    assert publish(client, {"data": "3", "key": "a"})[0] == 200
    assert publish(client, {"data": None, "key": "b"})[0] == 200
    assert [e[1] for e in events(stream)] == ["1", "3", "null"]


def test_conflated_events_are_counted() -> None:
    """
    A stream that is behind conflates the keyed events of conflated topics,
    and C{ssedemo_events_conflated_total} counts what it discarded.
    """
    metrics = Metrics()
    clock = Clock()
    hub = Hub(
        clock,
        MemoryLog(instance="t", clock=clock),
        observer=metrics,
        groups=choose_fanout().groups,
        conflated=lambda topic: topic == "prices",
    )
    app = SSEApp(hub, Settings(static=STATIC), observer=metrics)
    client = Client(app.site())
    stream = client.open("GET", "/sse?topic=prices")
    stream.transport.producer.pauseProducing()
    for n in range(10):
        hub.publish(str(n), topic="prices", key="k")
    hub.publish("plain", topic="prices")
    hub.publish("last", topic="prices", key="j")
    assert events(stream) == []
    stream.transport.producer.resumeProducing()
    assert events(stream) == [
        ("message", "9", "t-10"),
        ("message", "plain", "t-11"),
        ("message", "last", "t-12"),
    ]
    assert metrics.registry.get_sample_value("ssedemo_events_conflated_total") == 9
