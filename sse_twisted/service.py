"""
The running server: the web endpoint, the hub's timers, and a graceful stop.
"""

from __future__ import annotations

import gc
import json
import random
from collections.abc import Callable
from typing import Any, cast

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Site
from zope.interface import implementer

from sse_twisted.event import encode_jittered_retry
from sse_twisted.hub import Hub
from sse_twisted.ops.jsonlog import JsonLog
from sse_twisted.transport.limits import OpenFilesLimit

HEARTBEAT = json.dumps({"message": "Hello hello!"})

DRAIN_SECONDS = 0.2
"""How long a stop waits for the last bytes to reach the closed streams."""


class StreamCloser(Service):
    """
    Ends every open stream when the server stops, telling each client to come
    back after a random delay between one and two retry intervals, so that a
    restart is not met by all clients at once.
    """

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        retry: int,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """
        @param hub: The hub whose streams are ended.
        @param clock: Used to wait for the farewells to be written.
        @param retry: The usual reconnection delay, in milliseconds.
        @param jitter: Returns a fraction in [0, 1) of extra delay.
        """
        self._hub = hub
        self._clock = clock
        self._retry = retry
        self._jitter = jitter

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._hub.close_all(lambda: encode_jittered_retry(self._retry, self._jitter))
        return deferLater(self._clock, DRAIN_SECONDS, lambda: None)


class GarbageCollectorTuning(Service):
    """
    Makes Python's garbage collections walk the long-lived heap less while
    the server runs.

    Every open stream is a hundred or so long-lived objects. By default,
    an object that outlives a young collection is walked again in a middle
    one before it reaches the oldest generation, and each full collection
    walks all of them: with ten thousand streams, full collections were a
    third of the CPU spent opening a stream. Here every other collection
    is a middle one (its threshold is 0), which sends what it finds alive
    straight to the oldest generation: a stream's objects are walked one
    and a half times on their way on average, not twice (2 % of the cost
    of opening a stream). Full collections are ten times rarer than by
    default, counted in young collections. Short-lived cycles are still
    freed by the first collection that finds them dead. The objects loaded
    at start-up are frozen out of the walks.
    """

    def __init__(self, full_collection_factor: int = 10) -> None:
        """
        @param full_collection_factor: How many times rarer full collections
            become.
        """
        self._factor = full_collection_factor
        self._saved: tuple[int, int, int] | None = None

    def startService(self) -> None:
        super().startService()
        self._saved = gc.get_threshold()
        young, middle, full = self._saved
        gc.freeze()
        # By default a full collection comes after `full` middle ones, each
        # after `middle + 1` young ones; now every other one is a middle one.
        # Full ones as many collections apart as by default, times the factor:
        gc.set_threshold(young, 0, full * (middle + 1) * self._factor // 2)

    def stopService(self) -> None:
        super().stopService()
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            gc.unfreeze()


@implementer(IStreamServerEndpoint)
class ListenWhenReady:
    """
    An endpoint that listens at once but accepts only once something is
    ready, such as a shared event log that has read where its stream ends:
    meanwhile, clients wait in the listen queue, and none is served from a
    log that was not read. Binding at once means that a port that cannot
    be had (in use, not allowed) fails the start, as with any other port.

    @ivar endpoint: Where it listens.
    """

    def __init__(
        self, endpoint: IStreamServerEndpoint, ready: Callable[[], Deferred[None]]
    ) -> None:
        """
        @param endpoint: Where to listen.
        @param ready: Fires when accepting may start; it should not fail.
        """
        self.endpoint = endpoint
        self._ready = ready

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self.endpoint.listen(factory).addCallback(self._accept_when_ready)

    def _accept_when_ready(self, port: IListeningPort) -> IListeningPort:
        ready = self._ready()
        if not ready.called:
            # A listening port is a file descriptor the reactor reads to
            # accept; not reading it leaves clients in the listen queue.
            cast(Any, port).stopReading()
            ready.addCallback(lambda _: _accept_again(port))
        return port


def _accept_again(port: Any) -> None:
    if port.connected and not port.disconnecting:
        port.startReading()


class StopInTurn(MultiService):
    """
    A L{MultiService} whose children stop one at a time, the last added
    first, each once the one added after it has stopped (Twisted's stops
    them all at once): a log added first sees everything the others log
    until they have all stopped, however long that takes.
    """

    log = Logger()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        stopped: Deferred[None] = succeed(None)
        for child in reversed(list(self)):
            stopped.addCallback(self._stop, child).addErrback(self._not_stopped)
        return stopped

    def _stop(self, _: None, child: IService) -> Any:
        return child.stopService()

    def _not_stopped(self, failure: Failure) -> None:
        self.log.failure("a service did not stop cleanly", failure)


class PortService(StreamServerEndpointService):
    """
    Serves a site on an endpoint, as Twisted's own port services do for
    twistd: a port that cannot listen fails the start, and so twistd, rather
    than leave a server running that nobody can reach.
    """

    _raiseSynchronously = True


def _every(
    seconds: float, call: Callable[..., object], *args: object, clock: IReactorTime
) -> TimerService:
    timer = TimerService(seconds, call, *args)
    timer.clock = clock
    return timer


def sse_service(
    hub: Hub,
    site: Site,
    *endpoints: IStreamServerEndpoint,
    clock: IReactorTime,
    heartbeat: float,
    keepalive: float,
    retry: int,
    json_log: JsonLog | None = None,
) -> MultiService:
    """
    Assemble the server.

    @param hub: The hub the site publishes to.
    @param site: The web site.
    @param endpoints: Where to listen: the site is served on each.
    @param clock: The reactor's clock, for the timers.
    @param heartbeat: Seconds between demo heartbeats; C{0} for none.
    @param keepalive: The silence, in seconds, after which an open stream
        gets a comment (at most a quarter of it late); C{0} for none.
    @param retry: The clients' reconnection delay, in milliseconds.
    @param json_log: If given, started first and stopped last, so that it
        sees all that the server logs.
    @return: A service that runs all of it, and ends the open streams
        gracefully when stopped.
    """
    server = MultiService()
    if json_log is not None:
        json_log.setServiceParent(server)
    OpenFilesLimit().setServiceParent(server)
    GarbageCollectorTuning().setServiceParent(server)
    if heartbeat:
        _every(heartbeat, hub.broadcast, HEARTBEAT, clock=clock).setServiceParent(
            server
        )
    if keepalive:
        _every(
            keepalive / 4, hub.send_keepalives, keepalive, clock=clock
        ).setServiceParent(server)
    StreamCloser(hub, clock, retry).setServiceParent(server)
    # Added last, so stopped first (a MultiService stops its children in
    # reverse): no port accepts a new stream while the others are ended.
    for endpoint in endpoints:
        PortService(endpoint, site).setServiceParent(server)
    return server
