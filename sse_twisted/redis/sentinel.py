"""
Redis Sentinel: which server is the master now, and keeping ssedemo's
connections on it.

A failover is a reconnect with a new address. L{MasterEndpoint} asks the
sentinels, in order, for the master's address each time a connection is
made (the connection then checks with C{ROLE} that it is the master), and
L{SentinelWatch} moves the connections when the master changes: it listens
for C{+switch-master} on a sentinel's pub/sub and asks the sentinels every
L{POLL_INTERVAL} seconds, so that a demoted master (which accepts writes
until the sentinels turn it into a replica, and then loses them) is left
within seconds even when nothing is published.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from sse_twisted.redis.address import Login
from sse_twisted.redis.client import (
    COMMAND_TIMEOUT,
    BrokerUnavailable,
    RedisConnection,
    RedisProtocol,
    command_with_deadline,
)

POLL_INTERVAL = 2.0
"""Seconds between two questions to the sentinels about the master."""

SWITCH_MASTER = "+switch-master"
"""The channel on which a sentinel announces a new master."""

_log = Logger()

T = TypeVar("T")


def server_label(host: str, port: int) -> str:
    """
    @return: C{HOST:PORT} (C{[HOST]:PORT} for an IPv6 address), the name
        of a server in log lines and in L{RedisProtocol.server}.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def first_success(
    items: Sequence[T], attempt: Callable[[T], Deferred[Any]]
) -> Deferred[Any]:
    """
    Try C{attempt} on each of C{items} in order until one succeeds.

    @return: Fires with the first success; fails with L{BrokerUnavailable}
        naming every error if none succeeds. Cancelling it cancels the
        attempt under way.
    """

    async def run() -> Any:
        errors = []
        for item in items:
            try:
                return await attempt(item)
            except CancelledError:
                raise
            except Exception as e:
                errors.append(str(e).rstrip(".") or type(e).__name__)
        raise BrokerUnavailable("; ".join(errors))

    return Deferred.fromCoroutine(run())


class Sentinels:
    """
    The sentinels that watch one master, asked in order.
    """

    def __init__(
        self,
        endpoints: Sequence[IStreamClientEndpoint],
        master: str,
        clock: IReactorTime,
        login: Login | None = None,
    ) -> None:
        """
        @param endpoints: How to reach each sentinel, in the order to ask.
        @param master: The master's name in their configuration.
        @param clock: Times the questions.
        @param login: The sentinels' own user and password, if they need
            one (not the data servers').
        """
        self.endpoints = list(endpoints)
        self.master = master
        self.login = login or Login()
        self._clock = clock
        self._factory = Factory.forProtocol(RedisProtocol)
        self._factory.noisy = False

    def master_address(self) -> Deferred[tuple[str, int]]:
        """
        Ask the sentinels, in order, where the master is.

        @return: Fires with its host and port, from the first sentinel that
            knows; fails with L{BrokerUnavailable} if none does.
        """
        return first_success(self.endpoints, self._ask)

    def _ask(self, endpoint: IStreamClientEndpoint) -> Deferred[tuple[str, int]]:
        async def ask() -> tuple[str, int]:
            protocol = await endpoint.connect(self._factory)
            assert isinstance(protocol, RedisProtocol)
            try:
                if self.login.password is not None:
                    user = self.login.username or "default"
                    await self._execute(protocol, "AUTH", user, self.login.password)
                reply = await self._execute(
                    protocol, "SENTINEL", "get-master-addr-by-name", self.master
                )
            finally:
                if protocol.transport is not None:
                    protocol.transport.loseConnection()
            if not reply:
                raise BrokerUnavailable(f"a sentinel knows no master {self.master}")
            host, port = reply
            return host.decode("utf-8"), int(port)

        return Deferred.fromCoroutine(ask())

    def _execute(self, protocol: RedisProtocol, *command: str) -> Deferred[Any]:
        return command_with_deadline(protocol, self._clock, COMMAND_TIMEOUT, command)


@implementer(IStreamClientEndpoint)
class AnyEndpoint:
    """
    Connects through the first of several endpoints that connects.
    """

    def __init__(self, endpoints: Sequence[IStreamClientEndpoint]) -> None:
        """
        @param endpoints: Tried in this order.
        """
        self._endpoints = list(endpoints)

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        @return: Fires with the connected protocol.
        """
        return first_success(self._endpoints, lambda e: e.connect(factory))


@implementer(IStreamClientEndpoint)
class MasterEndpoint:
    """
    Connects to the server the sentinels name as the master right now, and
    tells its L{RedisProtocol} which server that is.
    """

    def __init__(
        self,
        sentinels: Sentinels,
        server: Callable[[str, int], IStreamClientEndpoint],
    ) -> None:
        """
        @param sentinels: Whom to ask.
        @param server: Makes the endpoint of a host and port.
        """
        self._sentinels = sentinels
        self._server = server

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        @return: Fires with the connected protocol.
        """

        async def connect() -> IProtocol:
            host, port = await self._sentinels.master_address()
            protocol = await self._server(host, port).connect(factory)
            if isinstance(protocol, RedisProtocol):
                protocol.server = server_label(host, port)
            return protocol

        return Deferred.fromCoroutine(connect())


class Follower(Protocol):
    """
    What L{SentinelWatch} keeps on the master: a
    L{sse_twisted.redis.client.RedisConnection}.
    """

    @property
    def connected(self) -> bool:
        """Whether it is connected."""

    @property
    def server(self) -> str | None:
        """The server it is connected to."""

    def reconnect(self) -> None:
        """Connect again at once."""


Subscriber = Callable[[Callable[[Any], object]], RedisConnection]
"""Makes the connection that gives a sentinel's messages to a callable."""


class SentinelWatch:
    """
    Moves connections to the master the sentinels name: asks them every
    L{POLL_INTERVAL} seconds, and at once when a sentinel announces
    C{+switch-master} (on the subscriber connection, if given).
    """

    def __init__(
        self,
        master: str,
        locate: Callable[[], Deferred[tuple[str, int]]],
        followers: Sequence[Follower],
        clock: IReactorTime,
        subscriber: Subscriber | None = None,
        interval: float = POLL_INTERVAL,
    ) -> None:
        """
        @param master: The master's name.
        @param locate: Asks where the master is (L{Sentinels.master_address}).
        @param followers: The connections to keep on the master.
        @param clock: Times the questions.
        @param subscriber: Makes a connection to a sentinel, subscribed to
            L{SWITCH_MASTER}, that gives its messages to the callable it is
            given (L{announced}).
        @param interval: Seconds between questions.
        """
        self._name = master
        self._locate = locate
        self._followers = list(followers)
        self._subscriber = None if subscriber is None else subscriber(self.announced)
        self._interval = interval
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock
        self._asking: Deferred[None] | None = None
        self._master: str | None = None

    def start(self) -> None:
        """
        Start watching.
        """
        if self._subscriber is not None:
            self._subscriber.start()
        self._loop.start(self._interval, now=False)

    def stop(self) -> Deferred[None]:
        """
        Stop watching.

        @return: Fires once the subscriber connection is closed.
        """
        if self._loop.running:
            self._loop.stop()
        if self._asking is not None:
            self._asking.cancel()
        if self._subscriber is not None:
            return self._subscriber.stop()
        return succeed(None)

    def announced(self, message: Any) -> None:
        """
        Take a message of the sentinel's pub/sub: on C{+switch-master} for
        this master, ask the sentinels at once.

        @param message: C{[b"message", channel, b"NAME OLDIP OLDPORT NEWIP
            NEWPORT"]}, as the RESP protocol delivers it.
        """
        if not (isinstance(message, list) and len(message) == 3):
            return
        kind, channel, text = message
        if kind != b"message" or channel != SWITCH_MASTER.encode():
            return
        if text.split(b" ")[0] != self._name.encode("utf-8"):
            return
        _log.info(
            "a sentinel announced a new master: {text}",
            text=text.decode("utf-8", "replace"),
        )
        self.check()

    def check(self) -> Deferred[None]:
        """
        Ask where the master is, and move the connections that are not on it.

        @return: Fires once done (the moves themselves are under way).
        """
        if self._asking is not None:
            return succeed(None)
        asking = self._locate().addCallbacks(self._located, self._not_located)
        self._asking = asking if not asking.called else None
        return asking

    def _located(self, address: tuple[str, int]) -> None:
        self._asking = None
        master = server_label(*address)
        moved = master != self._master
        self._master = master
        for follower in self._followers:
            server = follower.server
            if follower.connected and server != master:
                _log.warn(
                    "the sentinels name {master} as the master, not {server}:"
                    " moving there",
                    master=master,
                    server=server or "this server",
                )
                follower.reconnect()
            elif not follower.connected and moved:
                follower.reconnect()

    def _not_located(self, failure: Failure) -> None:
        self._asking = None
        failure.trap(BrokerUnavailable, CancelledError)
