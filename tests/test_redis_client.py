"""
Tests for L{sse_twisted.redis.client}: the RESP protocol in memory, and the
reconnecting connection against a real C{redis-server}.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from redis_fakes import FakeServer, FakeServers, array
from redis_server import RedisServer, free_port, running_redis
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
)
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure

from sse_twisted.redis.address import Login
from sse_twisted.redis.client import (
    BrokerUnavailable,
    RedisAddress,
    RedisConnection,
    RedisError,
    RedisProtocol,
)


def connected_protocol() -> tuple[RedisProtocol, StringTransport]:
    protocol = RedisProtocol()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def outcome(deferred: Deferred[Any]) -> Any:
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def test_commands_pipeline_and_replies_fire_in_order() -> None:
    """
    Commands are written at once in RESP; replies, even split anywhere,
    fire the commands' Deferreds in order, errors as L{RedisError}.
    """
    protocol, transport = connected_protocol()
    first = protocol.execute("SET", "k", b"v\r\n")
    second = protocol.execute("GET", "k")
    third = protocol.execute("XADD", "s", 1)
    assert transport.value() == (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n"
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        b"*3\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n1\r\n"
    )
    wire = b"+OK\r\n$3\r\nv\r\n\r\n-ERR wrong number\r\n"
    for n in range(len(wire)):
        protocol.dataReceived(wire[n : n + 1])
    assert outcome(first) == b"OK"
    assert outcome(second) == b"v\r\n"
    error = outcome(third)
    assert isinstance(error, Failure) and error.check(RedisError)
    assert "wrong number" in error.getErrorMessage()


def test_lost_connection_fails_pending_commands() -> None:
    protocol, _ = connected_protocol()
    pending = protocol.execute("XREAD", "BLOCK", 0)
    protocol.connectionLost(Failure(ConnectionError("reset")))
    assert protocol.lost.called
    assert outcome(pending).check(BrokerUnavailable)
    assert outcome(protocol.execute("PING")).check(BrokerUnavailable)


def test_cancelled_command_drops_the_connection() -> None:
    """
    A command cannot be taken back: cancelling it drops the connection, and
    its late reply is ignored.
    """
    protocol, transport = connected_protocol()
    cancelled = protocol.execute("AUTH", "x")
    other = protocol.execute("SELECT", 1)
    cancelled.cancel()
    assert outcome(cancelled).check(CancelledError)
    assert transport.disconnecting or transport.disconnected
    protocol.dataReceived(b"+OK\r\n")
    protocol.connectionLost(Failure(ConnectionError("aborted")))
    assert outcome(other).check(BrokerUnavailable)


def test_garbled_reply_drops_the_connection() -> None:
    protocol, transport = connected_protocol()
    protocol.execute("PING")
    protocol.dataReceived(b"?what\r\n")
    assert transport.disconnecting or transport.disconnected


def test_not_connected_fails_at_once() -> None:
    connection = RedisConnection(
        HostnameEndpoint(MemoryReactorClock(), "127.0.0.1", 1),
        RedisAddress("127.0.0.1"),
        Clock(),
        "t",
    )
    assert not connection.connected
    assert outcome(connection.execute("PING")).check(BrokerUnavailable)


def make_connection(
    reactor: Any, server: RedisServer, url: str | None = None
) -> RedisConnection:
    address = RedisAddress.from_url(url or server.url)
    endpoint = HostnameEndpoint(reactor, address.host, address.port)
    return RedisConnection(endpoint, address, reactor, "test", backoff=(0.05, 0.2))


@pytest_twisted.inlineCallbacks
def test_selects_the_database(reactor: Any, redis_server: RedisServer) -> Any:
    """
    The connection selects the URL's database before it is used.
    """
    connection = make_connection(reactor, redis_server, redis_server.url[:-1] + "3")
    connection.start()
    try:
        yield connection.when_connected()
        yield connection.execute("SET", "where", "three")
        assert redis_server.cli("-n", "3", "GET", "where") == "three"
        assert redis_server.cli("GET", "where") == ""
    finally:
        yield connection.stop()


@pytest_twisted.inlineCallbacks
def test_authenticates_with_the_password(
    reactor: Any, redis_server: RedisServer
) -> Any:
    redis_server.cli("CONFIG", "SET", "requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{redis_server.port}/0"
    connection = make_connection(reactor, redis_server, url)
    connection.start()
    try:
        yield connection.when_connected()
        assert (yield connection.execute("PING")) == b"PONG"
    finally:
        yield connection.stop()


@pytest_twisted.inlineCallbacks
def test_reconnects_after_redis_restarts(reactor: Any) -> Any:
    """
    While Redis is down, commands fail at once with L{BrokerUnavailable};
    the connection is made again, with backoff, once Redis is back.
    """
    with running_redis() as server:
        connection = make_connection(reactor, server)
        connection.start()
        try:
            yield connection.when_connected()
            server.kill()
            for _ in range(100):
                if not connection.connected:
                    break
                yield deferLater(reactor, 0.02, lambda: None)
            assert not connection.connected
            assert outcome(connection.execute("PING")).check(BrokerUnavailable)
            yield deferLater(reactor, 0.3, lambda: None)
            server.start()
            waited = connection.when_connected()
            waited.addTimeout(5, reactor)
            yield waited
            assert (yield connection.execute("PING")) == b"PONG"
        finally:
            yield connection.stop()


@pytest_twisted.inlineCallbacks
def test_wrong_password_is_retried_not_used(
    reactor: Any, redis_server: RedisServer
) -> Any:
    """
    A connection that Redis refuses to authenticate is dropped and tried
    again later, never handed out; stopping ends the retries and the wait.
    """
    redis_server.cli("CONFIG", "SET", "requirepass", "right")
    url = f"redis://:wrong@127.0.0.1:{redis_server.port}/0"
    connection = make_connection(reactor, redis_server, url)
    waiting = connection.when_connected()
    connection.start()
    yield deferLater(reactor, 0.3, lambda: None)
    assert not connection.connected
    assert not waiting.called
    yield connection.stop()
    assert outcome(waiting).check(CancelledError)
    clients = redis_server.cli("-a", "right", "--no-auth-warning", "CLIENT", "LIST")
    assert clients.count("\n") == 0  # only redis-cli itself


class CountingEndpoint:
    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint
        self.attempts = 0

    def connect(self, factory: Any) -> Any:
        self.attempts += 1
        return self.endpoint.connect(factory)


@pytest_twisted.inlineCallbacks
def test_stop_while_redis_is_unreachable(reactor: Any) -> Any:
    """
    A connection retries with backoff while Redis is unreachable, and
    stopping it ends the retries.
    """
    address = RedisAddress("127.0.0.1", free_port())
    endpoint = CountingEndpoint(HostnameEndpoint(reactor, address.host, address.port))
    connection = RedisConnection(
        endpoint, address, reactor, "test", backoff=(0.02, 0.05)
    )
    connection.start()
    # HostnameEndpoint reports a refused connection after its 0.3 s
    # attempt delay.
    yield deferLater(reactor, 1.0, lambda: None)
    assert endpoint.attempts >= 2
    yield connection.stop()
    attempts = endpoint.attempts
    yield deferLater(reactor, 0.2, lambda: None)
    assert endpoint.attempts == attempts
    assert not connection.connected


@pytest_twisted.inlineCallbacks
def test_silent_server_times_out(reactor: Any) -> Any:
    """
    A command without a reply within its timeout drops the connection, so it
    fails with L{BrokerUnavailable} instead of waiting for ever.
    """
    silent = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(Protocol)
    )
    try:
        address = RedisAddress("127.0.0.1", silent.getHost().port)
        protocol = yield TCP4ClientEndpoint(
            reactor, address.host, address.port
        ).connect(Factory.forProtocol(RedisProtocol))
        connection = RedisConnection(
            HostnameEndpoint(reactor, address.host, address.port),
            address,
            reactor,
            "test",
        )
        connection._current = protocol
        started = reactor.seconds()
        failure = yield connection.execute("PING", timeout=0.2).addErrback(
            lambda f: [f]
        )
        assert failure[0].check(BrokerUnavailable)
        assert reactor.seconds() - started < 5
    finally:
        yield silent.stopListening()


class RefusingEndpoint:
    def __init__(self) -> None:
        self.attempts = 0

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        return fail(ConnectionRefusedError())


def test_backoff_grows_and_a_long_outage_costs_few_log_lines() -> None:
    """
    While Redis refuses, attempts come further apart up to the longest wait,
    and only attempts 1, 2, 4, 8, ... are logged.
    """
    clock = Clock()
    endpoint = RefusingEndpoint()
    connection = RedisConnection(
        endpoint,  # type: ignore[arg-type]
        RedisAddress("127.0.0.1"),
        clock,
        "test",
        backoff=(0.1, 5.0),
        jitter=lambda: 0.0,
    )
    with capturedLogs() as events:
        connection.start()
        for _ in range(600):
            clock.advance(0.1)
    # After 0.1, 0.2, ... 3.2 s (6.3 s in all), every 5 s: 17 in 60 s.
    assert endpoint.attempts == 17
    attempts = [e["attempt"] for e in events if "attempt" in e]
    assert attempts == [1, 2, 4, 8, 16]
    assert "Connection was refused" in formatEvent(events[0])
    connection.stop()
    clock.advance(10)
    assert endpoint.attempts == 17


def fake_connection(
    servers: FakeServers, address: RedisAddress, **kwargs: Any
) -> RedisConnection:
    return RedisConnection(
        servers.endpoint("127.0.0.1", 6379),  # type: ignore[arg-type]
        address,
        servers.clock,
        "test",
        jitter=lambda: 0.0,
        **kwargs,
    )


def test_wrong_password_is_a_few_clear_lines_a_minute() -> None:
    """
    A password that Redis refuses is a clear warning that names the user,
    never the password, on attempts 1, 2, 4, 8, ... only: a few lines in a
    minute while it lasts, and the connection is never handed out.
    """
    servers = FakeServers(Clock())
    server = servers.add("127.0.0.1", 6379, FakeServer())
    server.password = b"right"
    connection = fake_connection(
        servers, RedisAddress("127.0.0.1", username="app", password="wr0ng")
    )
    with capturedLogs() as events:
        connection.start()
        for _ in range(600):
            servers.clock.advance(0.1)
    assert not connection.connected
    lines = [formatEvent(e) for e in events]
    assert len(lines) == 5
    assert all("wr0ng" not in line for line in lines)
    assert "Redis refused the password of user app: WRONGPASS" in lines[0]
    assert len(servers.attempts) == 17
    assert all(c[0] == b"AUTH" or c[0] == b"SELECT" for c in server.commands)
    connection.stop()


def test_a_server_that_is_not_the_master_is_not_used() -> None:
    """
    With C{require_master}, the connection checks C{ROLE} and is made again
    (with backoff) while the server is a replica.
    """
    servers = FakeServers(Clock())
    server = servers.add("127.0.0.1", 6379, FakeServer(role=b"slave"))
    connection = fake_connection(
        servers, RedisAddress("127.0.0.1", db=2), require_master=True
    )
    with capturedLogs() as events:
        connection.start()
        servers.clock.advance(0.2)
    assert not connection.connected
    assert "is not the master" in formatEvent(events[0])
    assert server.commands[:2] == [[b"SELECT", b"2"], [b"ROLE"]]
    server.role = b"master"
    servers.clock.advance(0.5)
    assert connection.connected
    assert connection.generation == 1


def test_readonly_reply_leaves_a_demoted_master() -> None:
    """
    A command answered C{READONLY} (the master was demoted) fails, and the
    connection is dropped and made again at once.
    """
    servers = FakeServers(Clock())
    server = servers.add("127.0.0.1", 6379, FakeServer())
    server.answers[b"XADD"] = lambda _: (
        b"-READONLY You can't write against a replica\r\n"
    )
    connection = fake_connection(
        servers, RedisAddress("127.0.0.1"), require_master=True
    )
    connection.start()
    assert connection.connected
    assert outcome(connection.execute("XADD", "s", "*", "data", "x")).check(RedisError)
    servers.clock.advance(0)
    assert not connection.connected
    servers.clock.advance(0.1)
    assert connection.connected and connection.generation == 2


def test_reconnect_moves_at_once() -> None:
    """
    L{RedisConnection.reconnect} drops a connection (made again after the
    first backoff), or cuts a long wait between attempts short.
    """
    servers = FakeServers(Clock())
    server = servers.add("127.0.0.1", 6379, FakeServer())
    connection = fake_connection(servers, RedisAddress("127.0.0.1"))
    connection.start()
    connection.reconnect()
    servers.clock.advance(0)
    assert not connection.connected
    servers.clock.advance(0.1)
    assert connection.generation == 2
    server.up = False
    server.drop()
    servers.clock.advance(30)
    assert not connection.connected
    server.up = True
    attempts = len(servers.attempts)
    connection.reconnect()
    assert len(servers.attempts) == attempts + 1
    assert connection.connected and connection.generation == 3


def test_subscribed_connection_passes_messages_on() -> None:
    """
    A connection that subscribes on connecting gives the channel's messages,
    which no command waits for, to C{pushed}.
    """
    servers = FakeServers(Clock())
    server = servers.add("127.0.0.1", 6379, FakeServer())
    pushed: list[Any] = []
    connection = fake_connection(
        servers,
        Login(),
        subscribe=["+switch-master"],
        pushed=pushed.append,
    )
    connection.start()
    assert connection.connected
    assert server.commands == [[b"SUBSCRIBE", b"+switch-master"]]
    [transport] = server.connections
    transport.push(array(b"message", b"+switch-master", b"m 1 2 3 4"))
    assert pushed == [[b"message", b"+switch-master", b"m 1 2 3 4"]]
