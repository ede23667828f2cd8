"""
Live state with C{--redis}, on a real C{redis-server}: retained values in
Redis written with their entry in one script, snapshots that agree with
their position on every instance, rewinds, and a Redis restart with
persistence.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from redis_server import RedisServer, running_redis
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs, formatEvent

from sse_twisted.hub import Hub
from sse_twisted.log import Rewind
from sse_twisted.redis import log as redis_log
from sse_twisted.redis.client import RedisAddress
from sse_twisted.redis.connect import shared_log
from sse_twisted.redis.log import RedisLog
from sse_twisted.redis.retained import PUBLISH_SCRIPT, retained_key
from sse_twisted.retained import TooManyKeys
from sse_twisted.testing import RecordingSink

DEADLINE = 10.0
DOCS = Path(__file__).parent.parent / "docs" / "protocol.md"


class Instance:
    """
    One ssedemo process's hub and Redis log, in this process.
    """

    def __init__(
        self,
        reactor: Any,
        server: RedisServer,
        history: int = 1000,
        max_keys: int = 10_000,
    ) -> None:
        address = RedisAddress.from_url(server.url)
        self.log: RedisLog = shared_log(
            reactor, address, "ssedemo", history, max_keys=max_keys
        )
        self.hub = Hub(reactor, self.log)
        self.log.feed(self.hub)
        self.log.startService()

    def stop(self) -> Deferred[Any]:
        return self.log.stopService()

    def publish(self, data: str, **fields: Any) -> Deferred[str]:
        receipt = self.hub.publish(data, **fields)
        assert isinstance(receipt, Deferred)
        return receipt.addCallback(lambda r: r.id)

    def stream(self, *topics: str, **start: Any) -> RecordingSink:
        sink = RecordingSink()
        self.hub.subscribe(sink, topics, **start)
        return sink


def until(reactor: Any, condition: Callable[[], object], what: str) -> Deferred[None]:
    """
    Wait, turning the reactor, until C{condition} holds (bounded).
    """

    async def wait() -> None:
        for _ in range(int(DEADLINE / 0.01)):
            if condition():
                return
            await deferLater(reactor, 0.01, lambda: None)
        raise AssertionError(f"timed out waiting for {what}")

    return ensureDeferred(wait())


def seen(sink: RecordingSink) -> list[tuple[str, str, str]]:
    return [(e.type, e.data, e.last_event_id) for e in sink.parsed().events]


def snapshotted(sink: RecordingSink) -> bool:
    return any(e.type == "snapshot" for e in sink.parsed().events)


def ready(reactor: Any, *instances: Instance) -> Generator[Any, Any, str]:
    """
    Publish a marker and wait until every instance has read it.
    """
    for instance in instances:
        yield until(reactor, lambda i=instance: i.log.available, "connected")
    marker = yield instances[0].publish("ready", topic="marker")
    for instance in instances:
        yield until(reactor, lambda i=instance: i.hub.last_id == marker, "the reader")
    return marker


@pytest_twisted.inlineCallbacks
def test_snapshot_agrees_with_its_position_on_every_instance(
    reactor: Any, redis_server: RedisServer
) -> Any:
    """
    Keyed events published on one instance are retained in Redis: a
    snapshot on the other gives them in id order with the newest id of
    the stream, deletions left out; live events after it follow.
    """
    a, b = Instance(reactor, redis_server), Instance(reactor, redis_server)
    try:
        yield from ready(reactor, a, b)
        first = yield a.publish("1", topic="prices", key="AAPL", event="price")
        yield b.publish("2", topic="prices", key="MSFT")
        yield a.publish("3", topic="prices", key="GONE")
        yield b.publish("null", topic="prices", key="GONE")
        newest = yield a.publish("x", topic="news")
        yield until(reactor, lambda: b.hub.last_id == newest, "b's reader")
        sink = b.stream("prices", snapshot=True)
        yield until(reactor, lambda: snapshotted(sink), "the snapshot")
        live = yield a.publish("4", topic="prices", key="AAPL")
        yield until(reactor, lambda: live in [e[2] for e in seen(sink)], "live")
        events = seen(sink)
        assert events[0] == ("price", "1", first)
        assert [e[:2] for e in events] == [
            ("price", "1"),
            ("message", "2"),
            ("snapshot", '{"count": 2}'),
            ("message", "4"),
        ]
        assert events[2][2] == newest
        assert redis_server.cli("HLEN", retained_key("ssedemo")) == "2"
    finally:
        yield a.stop()
        yield b.stop()


@pytest_twisted.inlineCallbacks
def test_between_reads_the_entries_after_and_up_to_page_by_page(
    reactor: Any, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """
    C{between} reads from Redis the entries of the topics after a position
    and up to an id, keys included, over several pages.
    """
    monkeypatch.setattr(redis_log, "READ_COUNT", 2)
    a = Instance(reactor, redis_server)
    try:
        marker = yield from ready(reactor, a)
        ids = []
        for data, topic, key in [
            ("1", "prices", "A"),
            ("2", "news", None),
            ("3", "prices", None),
            ("4", "weather", None),
            ("5", "prices", None),
        ]:
            fields = {"topic": topic} if key is None else {"topic": topic, "key": key}
            ids.append((yield a.publish(data, **fields)))
        records = yield a.log.between(ids[0], ids[4], {"prices", "news"})
        assert [r.id for r in records] == [ids[1], ids[2], ids[4]]
        records = yield a.log.between(marker, ids[2], {"prices"})
        assert [(r.id, r.key) for r in records] == [(ids[0], "A"), (ids[2], None)]
        records = yield a.log.between("", ids[0], {"marker", "prices"})
        assert [r.id for r in records] == [marker, ids[0]]
    finally:
        yield a.stop()


@pytest_twisted.inlineCallbacks
def test_max_keys_hold_across_instances(reactor: Any, redis_server: RedisServer) -> Any:
    a = Instance(reactor, redis_server, max_keys=2)
    b = Instance(reactor, redis_server, max_keys=2)
    try:
        yield from ready(reactor, a, b)
        yield a.publish("1", topic="t", key="one")
        yield b.publish("2", topic="t", key="two")
        with pytest.raises(TooManyKeys):
            yield b.publish("3", topic="t", key="three")
        entries = redis_server.cli("XLEN", "ssedemo")
        yield a.publish("4", topic="t", key="one")
        yield a.publish("null", topic="t", key="two")
        yield b.publish("5", topic="t", key="three")
        assert int(redis_server.cli("XLEN", "ssedemo")) == int(entries) + 3
    finally:
        yield a.stop()
        yield b.stop()


@pytest_twisted.inlineCallbacks
def test_rewind_with_redis(reactor: Any, redis_server: RedisServer) -> Any:
    """
    A rewind by count reads the stream backwards over its topics; one by
    time takes the entries whose ids' milliseconds are recent enough.
    """
    a = Instance(reactor, redis_server)
    try:
        yield from ready(reactor, a)
        ids = []
        for n in range(6):
            ids.append((yield a.publish(f"e{n}", topic="odd" if n % 2 else "even")))
        yield until(reactor, lambda: a.hub.last_id == ids[-1], "reader")
        counted = a.stream("odd", "marker", rewind=Rewind(count=3))
        timed = a.stream("even", rewind=Rewind(seconds=60))
        yield until(reactor, lambda: len(seen(counted)) == 3, "the rewind")
        last = yield a.publish("e6", topic="even")
        yield until(reactor, lambda: last in [e[2] for e in seen(timed)], "live")
        assert [e[1] for e in seen(counted)] == ["e1", "e3", "e5"]
        assert [e[1] for e in seen(timed)] == ["e0", "e2", "e4", "e6"]
        assert [e[2] for e in seen(counted)] == [ids[1], ids[3], ids[5]]
    finally:
        yield a.stop()


@pytest_twisted.inlineCallbacks
def test_snapshot_after_history_trimmed_and_after_resync(
    reactor: Any, redis_server: RedisServer
) -> Any:
    """
    The retained value outlives the stream's trimming; a stream resuming
    after an id trimmed away gets C{resync} and then the snapshot.
    """
    a = Instance(reactor, redis_server, history=100)
    try:
        yield from ready(reactor, a)
        old = yield a.publish("kept", topic="prices", key="A")
        for n in range(400):
            newest = yield a.publish(str(n), topic="prices")
        yield until(reactor, lambda: a.hub.last_id == newest, "reader")
        assert int(redis_server.cli("XLEN", "ssedemo")) < 400
        sink = a.stream("prices", last_event_id=old, snapshot=True)
        yield until(reactor, lambda: snapshotted(sink), "the snapshot")
        assert [e[:2] for e in seen(sink)] == [
            ("resync", json.dumps({"lastEventId": old})),
            ("message", "kept"),
            ("snapshot", '{"count": 1}'),
        ]
        assert seen(sink)[2][2] == newest
    finally:
        yield a.stop()


@pytest_twisted.inlineCallbacks
def test_retained_values_survive_a_redis_restart(reactor: Any) -> Any:
    """
    With persistence, a restarted Redis keeps the values; the scripts it
    forgot are sent again (C{NOSCRIPT}), so keyed publishes go on.
    """
    with running_redis(durable=True) as server:
        a = Instance(reactor, server)
        try:
            yield from ready(reactor, a)
            yield a.publish("v1", topic="t", key="k")
            server.restart()
            assert server.cli("SCRIPT", "EXISTS", _sha(PUBLISH_SCRIPT)) == "0"
            yield until(reactor, lambda: not a.log.available, "the loss seen")
            yield until(reactor, lambda: a.log.available, "reconnected")
            yield a.publish("j1", topic="t", key="j")
            fresh = Instance(reactor, server)
            try:
                yield from ready(reactor, fresh)
                sink = fresh.stream("t", snapshot=True)
                yield until(reactor, lambda: snapshotted(sink), "the snapshot")
                assert [e[1] for e in seen(sink)] == ["v1", "j1", '{"count": 2}']
            finally:
                yield fresh.stop()
        finally:
            yield a.stop()


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


@pytest_twisted.inlineCallbacks
def test_another_program_makes_a_value_retained_with_the_documented_script(
    reactor: Any, redis_server: RedisServer
) -> Any:
    """
    The script in the documentation is the one ssedemo runs; a program
    that runs it with its own client publishes a retained value.
    """
    [documented] = re.findall(r"```lua\n(.*?)```", DOCS.read_text(), re.S)
    assert documented == PUBLISH_SCRIPT
    a = Instance(reactor, redis_server)
    try:
        yield from ready(reactor, a)
        live = a.stream("prices")
        entry = redis_server.cli(
            "EVAL", documented, "2", "ssedemo", "ssedemo:retained",
            "1000", "10000", "prices", "AAPL", "187.5", "price",
        )  # fmt: skip
        yield until(reactor, lambda: seen(live), "delivered")
        assert seen(live) == [("price", "187.5", entry)]
        sink = a.stream("prices", snapshot=True)
        yield until(reactor, lambda: snapshotted(sink), "the snapshot")
        assert seen(sink)[0] == ("price", "187.5", entry)
    finally:
        yield a.stop()


@pytest.mark.parametrize("start", ["snapshot", "rewind"])
@pytest_twisted.inlineCallbacks
def test_streams_starting_on_two_instances_among_publishes(
    reactor: Any, redis_server: RedisServer, start: str
) -> Any:
    """
    Two instances publish keyed events without pause while 200 streams
    start on either: each stream's ids increase strictly and, from where
    it went live, are exactly the stream's entries of its topics.
    """
    a, b = Instance(reactor, redis_server), Instance(reactor, redis_server)
    rng = random.Random(3)
    published: list[str] = []
    try:
        yield from ready(reactor, a, b)

        async def publisher(instance: Instance, count: int) -> None:
            for n in range(count):
                topic = rng.choice("xyz")
                published.append(
                    await instance.publish(str(n), topic=topic, key=rng.choice("pq"))
                )

        publishing = [ensureDeferred(publisher(i, 150)) for i in (a, b)]
        sinks = []
        for n in range(200):
            instance = (a, b)[n % 2]
            topics = tuple(sorted(rng.sample("xyz", 2)))
            how = {"snapshot": True} if start == "snapshot" else {"rewind": Rewind(3)}
            sinks.append((instance.stream(*topics, **how), set(topics)))
            if n % 10 == 0:
                yield deferLater(reactor, 0.005, lambda: None)
        yield gatherResults(publishing)
        newest = max(published, key=_order)
        for instance in (a, b):
            yield until(reactor, lambda i=instance: i.hub.last_id == newest, "read")
        entries = _entries(redis_server)
        for sink, topics in sinks:
            yield until(
                reactor, lambda s=sink, t=topics: _complete(s, entries, t), "caught up"
            )
            _check(sink, entries, topics)
    finally:
        yield a.stop()
        yield b.stop()


@pytest_twisted.inlineCallbacks
def test_a_crowd_resuming_among_publishes_gets_every_event_once(
    reactor: Any, redis_server: RedisServer
) -> Any:
    """
    200 streams resume at once on two instances, a crowd coming back (live
    events are held, then let go), while both instances publish: each
    stream gets exactly the entries after its C{Last-Event-ID}, in order,
    each once.
    """
    a, b = Instance(reactor, redis_server), Instance(reactor, redis_server)
    rng = random.Random(7)
    try:
        yield from ready(reactor, a, b)
        earlier = []
        for n in range(20):
            earlier.append((yield a.publish(f"before {n}", topic="x")))

        async def publisher(instance: Instance, count: int) -> None:
            for n in range(count):
                await instance.publish(str(n), topic="x")

        with capturedLogs() as logged:
            publishing = [ensureDeferred(publisher(i, 100)) for i in (a, b)]
            sinks = []
            for n in range(200):
                after = rng.choice(earlier)
                sinks.append(((a, b)[n % 2].stream("x", last_event_id=after), after))
            yield gatherResults(publishing)
            newest = max(_order(i) for i, _, _ in _entries(redis_server))
            for sink, _ in sinks:
                yield until(
                    reactor,
                    lambda s=sink: any(
                        _order(e.last_event_id) == newest for e in s.parsed().events
                    ),
                    "caught up",
                )
        assert any("held" in formatEvent(e) for e in logged)
        entries = [i for i, topic, _ in _entries(redis_server) if topic == "x"]
        for sink, after in sinks:
            ids = [e.last_event_id for e in sink.parsed().events]
            assert ids == entries[entries.index(after) + 1 :]
    finally:
        yield a.stop()
        yield b.stop()


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _entries(server: RedisServer) -> list[tuple[str, str, str]]:
    """
    @return: Every entry of the stream: id, topic, key (none of the test's
        values looks like an entry id).
    """
    lines = server.cli("--raw", "XRANGE", "ssedemo", "-", "+").splitlines()
    entries: list[tuple[str, dict[str, str]]] = []
    n = 0
    while n < len(lines):
        if re.fullmatch(r"\d+-\d+", lines[n]):
            entries.append((lines[n], {}))
            n += 1
        else:
            entries[-1][1][lines[n]] = lines[n + 1]
            n += 2
    return [(i, f.get("topic", ""), f.get("key", "")) for i, f in entries]


def _complete(
    sink: RecordingSink, entries: list[tuple[str, str, str]], topics: set[str]
) -> bool:
    """
    Whether C{sink} got as far as the newest entry of its topics.
    """
    wanted = [i for i, topic, _ in entries if topic in topics]
    got = [_order(e.last_event_id) for e in sink.parsed().events if e.last_event_id]
    return bool(got) and max(got) >= _order(wanted[-1])


def _check(
    sink: RecordingSink, entries: list[tuple[str, str, str]], topics: set[str]
) -> None:
    events = sink.parsed().events
    ids = [e.last_event_id for e in events if e.type == "message"]
    marks = [n for n, e in enumerate(events) if e.type == "snapshot"]
    wanted = [i for i, topic, _ in entries if topic in topics]
    if marks:
        [split] = marks
        position = _order(events[split].last_event_id)
        upto = [e for e in entries if _order(e[0]) <= position and e[1] in topics]
        newest = {(topic, key): i for i, topic, key in upto}
        values = [e.last_event_id for e in events[:split]]
        assert values == sorted(newest.values(), key=_order)
        live = [e.last_event_id for e in events[split + 1 :]]
        assert live == [i for i in wanted if _order(i) > position]
    else:
        assert ids == wanted[wanted.index(ids[0]) :] if ids else True
        assert len(ids) >= min(3, len(wanted))
    assert [_order(i) for i in ids] == sorted({_order(i) for i in ids})
