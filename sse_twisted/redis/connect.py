"""
The shared log's connections, made from a C{--redis} address: to one server
(TCP, TLS or a unix socket), or to the master that Redis Sentinel names,
followed through failovers.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint

from sse_twisted.redis.address import Login, RedisAddress, SentinelAddress
from sse_twisted.redis.client import COMMAND_TIMEOUT, RedisConnection
from sse_twisted.redis.log import Helper, RedisLog
from sse_twisted.redis.sentinel import (
    SWITCH_MASTER,
    AnyEndpoint,
    MasterEndpoint,
    Sentinels,
    SentinelWatch,
)
from sse_twisted.redis.tls import ClientTLS
from sse_twisted.retained import DEFAULT_MAX_KEYS


def server_endpoint(
    reactor: Any, host: str, port: int, tls: ClientTLS | None
) -> IStreamClientEndpoint:
    """
    @param tls: How to speak TLS to C{host}, or C{None} for plain TCP.
    @return: The endpoint of a server at C{host} and C{port}: a host name
        is looked up (Twisted's L{HostnameEndpoint}), an IP address is
        connected to at once (the former would look it up too, in a thread
        pool, whose threads a new process or worker would start first).
    """
    endpoint: IStreamClientEndpoint
    if isIPAddress(host):
        endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=COMMAND_TIMEOUT)
    elif isIPv6Address(host):
        endpoint = TCP6ClientEndpoint(reactor, host, port, timeout=COMMAND_TIMEOUT)
    else:
        endpoint = HostnameEndpoint(reactor, host, port, timeout=COMMAND_TIMEOUT)
    return endpoint if tls is None else wrapClientTLS(tls.creator(host), endpoint)


def address_endpoint(
    reactor: Any, address: RedisAddress, tls: ClientTLS | None
) -> IStreamClientEndpoint:
    """
    @param tls: How to speak TLS, if C{address} says to.
    @return: The endpoint of the server at C{address}.
    """
    if address.path is not None:
        return UNIXClientEndpoint(reactor, address.path, timeout=COMMAND_TIMEOUT)
    return server_endpoint(
        reactor, address.host, address.port, tls if address.tls else None
    )


def shared_log(
    reactor: Any,
    address: RedisAddress | SentinelAddress,
    key: str,
    history: int,
    *,
    tls: ClientTLS | None = None,
    sentinel_login: Login | None = None,
    replicas: int = 0,
    replica_timeout: float = 1.0,
    max_keys: int = DEFAULT_MAX_KEYS,
) -> RedisLog:
    """
    Build the log of the stream C{key} at C{address}, with its two
    connections (made when the log starts as a service) and, behind
    Sentinel, the watch that keeps them on the master.

    @param reactor: Connects and times.
    @param address: Where Redis is.
    @param key: The stream's key.
    @param history: The approximate length the stream is trimmed to.
    @param tls: How to speak TLS, for an address that says to.
    @param sentinel_login: The sentinels' own credentials, if they need one.
    @param replicas: How many replicas must have a published event.
    @param replica_timeout: Seconds to wait for them.
    @param max_keys: The most retained values, across all topics and all
        processes on the stream.
    @return: The log, to be fed to the hub and started.
    """
    helpers: list[Helper] = []
    if isinstance(address, RedisAddress):
        endpoint = address_endpoint(reactor, address, tls)
        publisher, reader = (
            RedisConnection(endpoint, address, reactor, name)
            for name in ("publishing", "reading")
        )
    else:
        publisher, reader, watch = _follow_master(
            reactor, address, tls if address.tls else None, sentinel_login
        )
        helpers.append(watch)
    return RedisLog(
        publisher,
        reader,
        reactor,
        key,
        history,
        max_keys=max_keys,
        replicas=replicas,
        replica_timeout=replica_timeout,
        helpers=helpers,
    )


def _follow_master(
    reactor: Any,
    address: SentinelAddress,
    tls: ClientTLS | None,
    sentinel_login: Login | None,
) -> tuple[RedisConnection, RedisConnection, SentinelWatch]:
    sentinel_endpoints = [
        server_endpoint(reactor, host, port, tls) for host, port in address.sentinels
    ]
    sentinels = Sentinels(sentinel_endpoints, address.master, reactor, sentinel_login)
    endpoint = MasterEndpoint(
        sentinels, lambda host, port: server_endpoint(reactor, host, port, tls)
    )
    publisher, reader = (
        RedisConnection(endpoint, address.login, reactor, name, require_master=True)
        for name in ("publishing", "reading")
    )

    def subscriber(pushed: Any) -> RedisConnection:
        return RedisConnection(
            AnyEndpoint(sentinel_endpoints),
            sentinels.login,
            reactor,
            "sentinel events",
            subscribe=[SWITCH_MASTER],
            pushed=pushed,
        )

    watch = SentinelWatch(
        address.master,
        sentinels.master_address,
        [publisher, reader],
        reactor,
        subscriber,
    )
    return publisher, reader, watch
