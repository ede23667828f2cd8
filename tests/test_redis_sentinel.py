"""
Tests for L{sse_twisted.redis.sentinel}: finding the master and following
it through failovers, on in-memory servers and sentinels and a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from redis_fakes import FakeServer, FakeServers, array
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure

from sse_twisted.redis.address import Login
from sse_twisted.redis.client import BrokerUnavailable, RedisConnection
from sse_twisted.redis.sentinel import (
    POLL_INTERVAL,
    SWITCH_MASTER,
    AnyEndpoint,
    MasterEndpoint,
    Sentinels,
    SentinelWatch,
    server_label,
)

NAME = b"mymaster"


def outcome(deferred: Deferred[Any]) -> Any:
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


class Cluster:
    """
    Two data servers (A master, B replica) and three sentinels, the first
    of which is down.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.servers = FakeServers(self.clock)
        self.a = self.servers.add("10.0.0.1", 6379, FakeServer())
        self.b = self.servers.add("10.0.0.2", 6379, FakeServer(role=b"slave"))
        self.sentinels = [
            self.servers.add("10.0.1.1", port, FakeServer()) for port in (1, 2, 3)
        ]
        self.sentinels[0].up = False
        self.name(b"10.0.0.1")
        endpoints = [self.servers.endpoint("10.0.1.1", p) for p in (1, 2, 3)]
        self.lookup = Sentinels(endpoints, "mymaster", self.clock)  # type: ignore[arg-type]
        self.endpoint = MasterEndpoint(self.lookup, self.servers.endpoint)  # type: ignore[arg-type]
        self.connections = [
            RedisConnection(
                self.endpoint,
                Login(db=0),
                self.clock,
                name,
                jitter=lambda: 0.0,
                require_master=True,
            )
            for name in ("publishing", "reading")
        ]

        def subscriber(pushed: Any) -> RedisConnection:
            return RedisConnection(
                AnyEndpoint(endpoints),  # type: ignore[arg-type]
                self.lookup.login,
                self.clock,
                "sentinel events",
                jitter=lambda: 0.0,
                subscribe=[SWITCH_MASTER],
                pushed=pushed,
            )

        self.watch = SentinelWatch(
            "mymaster",
            self.lookup.master_address,
            self.connections,
            self.clock,
            subscriber,
        )

    def name(self, host: bytes) -> None:
        """
        Make every sentinel name C{host} the master.
        """
        for sentinel in self.sentinels:
            sentinel.names[NAME] = (host, b"6379")

    def start(self) -> None:
        for connection in self.connections:
            connection.start()
        self.watch.start()

    def on(self) -> list[str | None]:
        return [c.server for c in self.connections]


def test_sentinels_are_asked_in_order() -> None:
    """
    The master's address comes from the first sentinel that answers one:
    one that is down, or knows no such master, is passed over.
    """
    cluster = Cluster()
    cluster.sentinels[1].names.clear()
    assert outcome(cluster.lookup.master_address()) == ("10.0.0.1", 6379)
    assert cluster.servers.attempts == [
        ("10.0.1.1", 1),
        ("10.0.1.1", 2),
        ("10.0.1.1", 3),
    ]
    assert cluster.sentinels[2].commands == [
        [b"SENTINEL", b"get-master-addr-by-name", NAME]
    ]
    assert not cluster.sentinels[2].connections  # each question its own


def test_no_sentinel_knows_the_master() -> None:
    cluster = Cluster()
    for sentinel in cluster.sentinels:
        sentinel.names.clear()
    failure = outcome(cluster.lookup.master_address())
    assert isinstance(failure, Failure) and failure.check(BrokerUnavailable)
    assert "knows no master mymaster" in failure.getErrorMessage()
    assert "10.0.1.1:1" in failure.getErrorMessage()


def test_sentinels_with_a_password() -> None:
    cluster = Cluster()
    cluster.sentinels[1].password = b"sp"
    endpoints = [cluster.servers.endpoint("10.0.1.1", 2)]
    lookup = Sentinels(endpoints, "mymaster", cluster.clock, Login(password="sp"))  # type: ignore[arg-type]
    assert outcome(lookup.master_address()) == ("10.0.0.1", 6379)
    assert cluster.sentinels[1].commands[0] == [b"AUTH", b"default", b"sp"]


def test_connections_go_to_the_master_and_say_which() -> None:
    """
    Both connections reach the server the sentinels name, after checking
    its role, and know which server that is.
    """
    cluster = Cluster()
    cluster.start()
    assert cluster.on() == ["10.0.0.1:6379", "10.0.0.1:6379"]
    assert [c[0] for c in cluster.a.commands] == [b"SELECT", b"ROLE"] * 2
    assert cluster.sentinels[1].commands[-1] == [b"SUBSCRIBE", b"+switch-master"]


def test_failover_announced_moves_both_connections_at_once() -> None:
    """
    When the master dies, the connections wait (with backoff) while the
    sentinels still name it; the C{+switch-master} announcement moves both
    to the new master at once.
    """
    cluster = Cluster()
    cluster.start()
    cluster.a.up = False
    cluster.a.drop()
    cluster.clock.advance(POLL_INTERVAL - 0.1)
    assert cluster.on() == [None, None]
    cluster.b.role = b"master"
    cluster.name(b"10.0.0.2")
    [events] = cluster.sentinels[1].connections
    with capturedLogs() as logged:
        events.push(
            array(
                b"message", b"+switch-master", b"mymaster 10.0.0.1 6379 10.0.0.2 6379"
            )
        )
    assert cluster.on() == ["10.0.0.2:6379", "10.0.0.2:6379"]
    assert "mymaster 10.0.0.1 6379 10.0.0.2 6379" in formatEvent(logged[0])


def test_announcements_of_other_masters_are_ignored() -> None:
    cluster = Cluster()
    cluster.start()
    [events] = cluster.sentinels[1].connections
    asked = len(cluster.sentinels[1].commands)
    events.push(array(b"message", b"+switch-master", b"other 1.1.1.1 1 2.2.2.2 2"))
    events.push(array(b"message", b"+sdown", b"mymaster"))
    assert len(cluster.sentinels[1].commands) == asked


def test_demoted_master_is_left_within_the_poll_interval() -> None:
    """
    A master that is still up but no longer the one the sentinels name
    (cut off from them, then demoted) is left at the next question to the
    sentinels, even with nothing published and no announcement heard.
    """
    cluster = Cluster()
    cluster.start()
    cluster.sentinels[1].drop()  # no announcement will be heard
    cluster.b.role = b"master"
    cluster.name(b"10.0.0.2")
    with capturedLogs() as logged:
        cluster.clock.advance(POLL_INTERVAL)
        cluster.clock.advance(0.1)
    assert POLL_INTERVAL + 0.1 < 5
    assert cluster.on() == ["10.0.0.2:6379", "10.0.0.2:6379"]
    lines = [formatEvent(e) for e in logged]
    moving = "the sentinels name 10.0.0.2:6379 as the master, not 10.0.0.1:6379"
    assert sum(moving in line for line in lines) == 2, lines


def test_polls_do_not_disturb_a_connection_on_the_master() -> None:
    cluster = Cluster()
    cluster.start()
    for _ in range(10):
        cluster.clock.advance(POLL_INTERVAL)
    assert [c.generation for c in cluster.connections] == [1, 1]
    # Two questions to connect, SUBSCRIBE, then one question per interval.
    assert len(cluster.sentinels[1].commands) == 2 + 1 + 10


def test_stop_ends_the_watch() -> None:
    cluster = Cluster()
    cluster.start()
    stopped = cluster.watch.stop()
    cluster.clock.advance(0)
    assert outcome(stopped) is None
    asked = len(cluster.sentinels[1].commands)
    cluster.clock.advance(10 * POLL_INTERVAL)
    assert len(cluster.sentinels[1].commands) == asked


def test_server_label() -> None:
    assert server_label("10.0.0.1", 1) == "10.0.0.1:1"
    assert server_label("::1", 1) == "[::1]:1"
