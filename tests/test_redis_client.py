"""
Tests for L{sse_twisted.redis_client}: the RESP protocol in memory, and the
reconnecting connection against a real C{redis-server}.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from redis_server import RedisServer, running_redis
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from sse_twisted.redis_client import (
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
