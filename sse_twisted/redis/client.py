"""
The way to Redis: a small non-blocking client of its protocol (RESP) on
Twisted, with C{hiredis} as the reply parser, and a connection that is made
again whenever it is lost (where Redis is: L{sse_twisted.redis.address}).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

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

from sse_twisted.redis.address import DEFAULT_REDIS_PORT as DEFAULT_REDIS_PORT
from sse_twisted.redis.address import InvalidRedisURL as InvalidRedisURL
from sse_twisted.redis.address import Login
from sse_twisted.redis.address import RedisAddress as RedisAddress

COMMAND_TIMEOUT = 5.0
"""Seconds a command may wait for its reply before the connection is dropped."""

_log = Logger()


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


class NotMaster(BrokerUnavailable):
    """
    The server is not (or no longer) the master: it cannot store events.
    """


class NotReplicated(BrokerUnavailable):
    """
    The master stored an event, but too few replicas are known to have it:
    it is not known to be stored (it may be lost in a failover).
    """


class LoginRefused(BrokerUnavailable):
    """
    Redis refused the credentials (C{AUTH}).
    """


class RedisProtocol(Protocol):
    """
    One connection speaking RESP: commands are written at once (so they
    pipeline) and their replies, parsed by C{hiredis}, fire the commands'
    L{Deferred}s in order. A reply that no command waits for (a message of
    a C{SUBSCRIBE}d channel) goes to C{pushed}.
    """

    def __init__(self, pushed: Callable[[Any], object] | None = None) -> None:
        """
        @param pushed: Called with each reply no command waits for; without
            it, such a reply drops the connection.
        """
        self._parser = hiredis.Reader(replyError=RedisError)
        self._waiting: deque[Deferred[Any]] = deque()
        self._pushed = pushed
        self.lost: Deferred[None] = Deferred()
        """Fires once the connection is gone."""
        self.server: str | None = None
        """The server (C{HOST:PORT}) as the endpoint located it, if it says."""

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
                if not self._waiting and self._pushed is not None:
                    self._pushed(reply)
                    continue
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
    One connection to Redis, made again with exponential backoff (and
    jitter) whenever it fails or is lost, and prepared with C{AUTH} and
    C{SELECT} (and optionally C{ROLE}, C{SUBSCRIBE}) before use.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        address: RedisAddress | Login,
        clock: IReactorTime,
        name: str,
        backoff: tuple[float, float] = (0.1, 5.0),
        jitter: Callable[[], float] = random.random,
        *,
        require_master: bool = False,
        subscribe: Sequence[str] = (),
        pushed: Callable[[Any], object] | None = None,
    ) -> None:
        """
        @param endpoint: How to reach Redis (asked again on each attempt).
        @param address: Its credentials and database.
        @param clock: Times the retries and the command deadlines.
        @param name: What the connection is for, in log lines.
        @param backoff: The first and the longest wait between attempts,
            in seconds.
        @param jitter: Returns a fraction in [0, 1) of extra wait.
        @param require_master: Use only a server whose C{ROLE} is master,
            and leave one that answers C{READONLY} (it was demoted).
        @param subscribe: Channels to C{SUBSCRIBE} to on connecting.
        @param pushed: Gets the messages of those channels.
        """
        self._endpoint = endpoint
        self._login = address if isinstance(address, Login) else address.login
        self._clock = clock
        self._name = name
        self._backoff = backoff
        self._jitter = jitter
        self._require_master = require_master
        self._subscribe = tuple(subscribe)
        self._factory = Factory.forProtocol(lambda: RedisProtocol(pushed))
        # Twisted would log every attempt's factory start and stop.
        self._factory.noisy = False
        self.generation = 0
        """How many times the connection was made (and prepared)."""
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

    @property
    def server(self) -> str | None:
        """
        The server it is connected to, if its endpoint said (Sentinel's).
        """
        return None if self._current is None else self._current.server

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
        current = self._current
        if current is None:
            return fail(BrokerUnavailable(f"not connected to Redis ({self._name})"))
        reply = command_with_deadline(current, self._clock, timeout, args)
        if self._require_master:
            reply.addErrback(self._demoted, current)
        return reply

    def reconnect(self) -> None:
        """
        Connect again at once, to wherever the endpoint leads now: drop the
        connection, or cut short the wait before the next attempt.
        """
        if not self._running:
            return
        if self._current is not None:
            self._current.abort()
        elif self._retry is not None and self._retry.active():
            self._retry.cancel()
            self._failures = 0
            self._connect()

    def _demoted(self, failure: Failure, protocol: RedisProtocol) -> Failure:
        if failure.check(RedisError) and failure.getErrorMessage().startswith(
            "READONLY"
        ):
            if protocol is self._current:
                _log.warn(
                    "Redis at {server} is no longer the master ({name}): leaving it",
                    server=protocol.server or "?",
                    name=self._name,
                )
            protocol.abort()
        return failure

    def _connect(self) -> None:
        self._retry = None
        attempt = self._endpoint.connect(self._factory)
        self._attempt = attempt
        prepared = attempt.addCallback(self._prepare)
        prepared.addCallbacks(self._ready, self._failed)

    def _prepare(self, connected: IProtocol) -> Deferred[RedisProtocol]:
        protocol = cast(RedisProtocol, connected)
        login = self._login
        user = login.username or "default"
        commands: list[tuple[str | int, ...]] = []
        if login.password is not None:
            commands.append(("AUTH", user, login.password))
        if login.db is not None:
            commands.append(("SELECT", login.db))
        if self._require_master:
            commands.append(("ROLE",))
        if self._subscribe:
            commands.append(("SUBSCRIBE", *self._subscribe))
        replies = [
            command_with_deadline(protocol, self._clock, COMMAND_TIMEOUT, command)
            for command in commands
        ]

        def prepared(results: list[Any]) -> RedisProtocol:
            if self._require_master:
                role = results[commands.index(("ROLE",))]
                if not (role and role[0] == b"master"):
                    protocol.abort()
                    raise NotMaster(
                        f"{protocol.server or 'the server'} is not the master"
                    )
            return protocol

        def failed(failure: Failure) -> Failure:
            protocol.abort()
            error = failure.value
            assert isinstance(error, FirstError)
            if commands[error.index][0] == "AUTH" and error.subFailure.check(
                RedisError
            ):
                return Failure(
                    LoginRefused(
                        f"Redis refused the password of user {user}:"
                        f" {error.subFailure.getErrorMessage()}"
                    )
                )
            return error.subFailure

        done: Deferred[RedisProtocol] = gatherResults(
            replies, consumeErrors=True
        ).addCallbacks(prepared, failed)
        return done

    def _ready(self, protocol: RedisProtocol) -> None:
        self._attempt = None
        self._current = protocol
        self._failures = 0
        self.generation += 1
        _log.info(
            "connected to Redis{at} ({name})",
            at=f" at {protocol.server}" if protocol.server else "",
            name=self._name,
        )
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
                "cannot use Redis ({name}, attempt {attempt}): {error};"
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


def command_with_deadline(
    protocol: RedisProtocol,
    clock: IReactorTime,
    timeout: float,
    command: tuple[str | bytes | int, ...],
) -> Deferred[Any]:
    """
    Send C{command} on C{protocol}; drop the connection if no reply comes
    within C{timeout} seconds, which fails every pending command.

    @return: Fires with the reply, as L{RedisProtocol.execute}'s.
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
