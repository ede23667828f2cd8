"""
The way to Redis: where it is (C{--redis redis://HOST:PORT/DB}), and a small
non-blocking client of its protocol (RESP) on Twisted, with C{hiredis} as the
reply parser and a connection that is made again whenever it is lost.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    FirstError,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

DEFAULT_REDIS_PORT = 6379

COMMAND_TIMEOUT = 5.0
"""Seconds a command may wait for its reply before the connection is dropped."""

_log = Logger()

_MAX_DB = 1 << 16


class InvalidRedisURL(ValueError):
    """
    A C{--redis} value is not a C{redis://HOST:PORT/DB} URL.
    """


@dataclass(frozen=True)
class RedisAddress:
    """
    Where one Redis database is.

    @ivar host: The host name or address.
    @ivar port: The TCP port.
    @ivar db: The database number, selected on connecting.
    @ivar password: Sent with C{AUTH} on connecting, if given.
    @ivar username: The ACL user for C{AUTH}, if given.
    """

    host: str
    port: int = DEFAULT_REDIS_PORT
    db: int = 0
    password: str | None = field(default=None, repr=False)
    username: str | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """
        Parse C{redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]}; the port
        defaults to 6379 and the database to 0.

        @param url: The URL.
        @return: The address.
        @raise InvalidRedisURL: If C{url} is not such a URL.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise InvalidRedisURL(str(e)) from None
        if parts.scheme != "redis":
            raise InvalidRedisURL("the scheme must be redis://")
        if not parts.hostname:
            raise InvalidRedisURL("a host is required")
        if port == 0:
            raise InvalidRedisURL("the port must not be 0")
        if parts.query or parts.fragment:
            raise InvalidRedisURL("no query or fragment is allowed")
        db = parts.path.strip("/") or "0"
        if not (db.isascii() and db.isdigit() and int(db) < _MAX_DB):
            raise InvalidRedisURL(f"the database must be a number, not {db!r}")
        return cls(
            host=parts.hostname,
            port=DEFAULT_REDIS_PORT if port is None else port,
            db=int(db),
            password=None if parts.password is None else unquote(parts.password),
            username=unquote(parts.username) if parts.username else None,
        )


class RedisError(Exception):
    """
    Redis answered a command with an error.
    """


class BrokerUnavailable(Exception):
    """
    Redis cannot be reached right now: not connected, the connection was
    lost, or it did not answer in time. A command that failed so may or may
    not have been carried out.
    """


class RedisProtocol(Protocol):
    """
    One connection speaking RESP: commands are written at once (so they
    pipeline) and their replies, parsed by C{hiredis}, fire the commands'
    L{Deferred}s in order.
    """

    def __init__(self) -> None:
        self._parser = hiredis.Reader(replyError=RedisError)
        self._waiting: deque[Deferred[Any]] = deque()
        self.lost: Deferred[None] = Deferred()
        """Fires once the connection is gone."""

    def execute(self, *args: str | bytes | int) -> Deferred[Any]:
        """
        Send one command.

        @param args: The command and its arguments.
        @return: Fires with the reply (bulk strings as C{bytes}), or fails
            with L{RedisError} or L{BrokerUnavailable}.
        """
        if self.transport is None or self.lost.called:
            return fail(BrokerUnavailable("not connected"))
        # A command cannot be taken back: cancelling one drops the
        # connection, which fails the others.
        reply: Deferred[Any] = Deferred(lambda _: self.abort())
        self._waiting.append(reply)
        self.transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]
        return reply

    def abort(self) -> None:
        """
        Drop the connection at once; every pending command fails.
        """
        if self.transport is not None:
            cast(ITCPTransport, self.transport).abortConnection()

    def dataReceived(self, data: bytes) -> None:
        self._parser.feed(data)
        try:
            while (reply := self._parser.gets()) is not False:
                waiting = self._waiting.popleft()
                if waiting.called:
                    continue  # cancelled
                if isinstance(reply, RedisError):
                    waiting.errback(reply)
                else:
                    waiting.callback(reply)
        except (hiredis.ProtocolError, IndexError):
            _log.failure("garbled reply from Redis: dropping the connection")
            self.abort()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Whoever watches the connection learns first that it is gone, so
        # that the failed commands' callbacks do not retry on it.
        self.lost.callback(None)
        waiting, self._waiting = self._waiting, deque()
        for reply in waiting:
            if not reply.called:
                reply.errback(BrokerUnavailable(f"connection lost: {reason.value}"))


class RedisConnection:
    """
    One connection to the Redis of a L{RedisAddress}, made again with
    exponential backoff (and jitter) whenever it fails or is lost, and
    prepared with C{AUTH} and C{SELECT} before use.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        address: RedisAddress,
        clock: IReactorTime,
        name: str,
        backoff: tuple[float, float] = (0.1, 5.0),
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """
        @param endpoint: How to reach Redis.
        @param address: Its credentials and database.
        @param clock: Times the retries and the command deadlines.
        @param name: What the connection is for, in log lines.
        @param backoff: The first and the longest wait between attempts,
            in seconds.
        @param jitter: Returns a fraction in [0, 1) of extra wait.
        """
        self._endpoint = endpoint
        self._address = address
        self._clock = clock
        self._name = name
        self._backoff = backoff
        self._jitter = jitter
        self._factory = Factory.forProtocol(RedisProtocol)
        self._current: RedisProtocol | None = None
        self._attempt: Deferred[IProtocol] | None = None
        self._retry: IDelayedCall | None = None
        self._failures = 0
        self._running = False
        self._waiters: list[Deferred[None]] = []

    @property
    def connected(self) -> bool:
        """
        Whether the connection is up and prepared.
        """
        return self._current is not None

    def start(self) -> None:
        """
        Connect, and keep connecting until L{stop}.
        """
        self._running = True
        self._connect()

    def stop(self) -> Deferred[None]:
        """
        Stop connecting and close the connection.

        @return: Fires once it is closed.
        """
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._attempt is not None:
            self._attempt.cancel()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.cancel()
        current, self._current = self._current, None
        if current is None or current.transport is None:
            return succeed(None)
        current.transport.loseConnection()
        return current.lost

    def when_connected(self) -> Deferred[None]:
        """
        @return: Fires once the connection is up and prepared (at once if
            it is).
        """
        if self._current is not None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def execute(
        self, *args: str | bytes | int, timeout: float = COMMAND_TIMEOUT
    ) -> Deferred[Any]:
        """
        Send one command, if connected.

        @param args: The command and its arguments.
        @param timeout: Seconds after which, without a reply, the
            connection is dropped (and made again).
        @return: Fires with the reply, or fails with L{RedisError}, or with
            L{BrokerUnavailable} if not connected or lost meanwhile.
        """
        if self._current is None:
            return fail(BrokerUnavailable(f"not connected to Redis ({self._name})"))
        return _with_deadline(self._current, self._clock, timeout, args)

    def _connect(self) -> None:
        self._retry = None
        attempt = self._endpoint.connect(self._factory)
        self._attempt = attempt
        prepared = attempt.addCallback(self._prepare)
        prepared.addCallbacks(self._ready, self._failed)

    def _prepare(self, connected: IProtocol) -> Deferred[RedisProtocol]:
        protocol = cast(RedisProtocol, connected)
        address = self._address
        commands: list[tuple[str | int, ...]] = []
        if address.password is not None:
            credentials = (address.username or "default", address.password)
            commands.append(("AUTH", *credentials))
        commands.append(("SELECT", address.db))
        replies = [
            _with_deadline(protocol, self._clock, COMMAND_TIMEOUT, command)
            for command in commands
        ]

        def prepared(_: object) -> RedisProtocol:
            return protocol

        def failed(failure: Failure) -> Failure:
            protocol.abort()
            error = failure.value
            assert isinstance(error, FirstError)
            return error.subFailure

        done: Deferred[RedisProtocol] = gatherResults(
            replies, consumeErrors=True
        ).addCallbacks(prepared, failed)
        return done

    def _ready(self, protocol: RedisProtocol) -> None:
        self._attempt = None
        self._current = protocol
        self._failures = 0
        _log.info("connected to Redis ({name})", name=self._name)
        protocol.lost.addCallback(self._lost, protocol)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _failed(self, failure: Failure) -> None:
        self._attempt = None
        if failure.check(CancelledError) or not self._running:
            return
        self._failures += 1
        delay = self._delay()
        # Attempts 1, 2, 4, 8, ...: a long outage costs few log lines.
        if self._failures & (self._failures - 1) == 0:
            _log.warn(
                "cannot reach Redis ({name}, attempt {attempt}): {error};"
                " trying again in {delay:.1f} s",
                name=self._name,
                attempt=self._failures,
                error=failure.getErrorMessage().rstrip("."),
                delay=delay,
            )
        self._retry = self._clock.callLater(delay, self._connect)

    def _lost(self, _: None, protocol: RedisProtocol) -> None:
        if self._current is not protocol:
            return
        self._current = None
        if not self._running:
            return
        delay = self._delay()
        _log.warn(
            "lost the connection to Redis ({name}); reconnecting in {delay:.1f} s",
            name=self._name,
            delay=delay,
        )
        self._retry = self._clock.callLater(delay, self._connect)

    def _delay(self) -> float:
        first, longest = self._backoff
        doublings = min(max(self._failures - 1, 0), 32)
        return min(first * 2**doublings, longest) * (1 + self._jitter() / 2)


def _with_deadline(
    protocol: RedisProtocol,
    clock: IReactorTime,
    timeout: float,
    command: tuple[str | bytes | int, ...],
) -> Deferred[Any]:
    """
    Send C{command} on C{protocol}; drop the connection if no reply comes
    within C{timeout} seconds, which fails every pending command.
    """
    reply = protocol.execute(*command)
    if reply.called:
        return reply
    deadline = clock.callLater(timeout, protocol.abort)

    def done(result: object) -> object:
        if deadline.active():
            deadline.cancel()
        return result

    return reply.addBoth(done)
