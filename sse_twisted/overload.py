"""
A limit on open streams that keeps browsers coming back.

Any status but C{200} makes C{EventSource} give up for good, so a stream
over the limit is answered C{200} with nothing but a C{retry:} field
between one and two retry intervals, and ended at once: the browser comes
back later by itself, at a random moment, so that the refused clients do
not all return together.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.server import Request

from sse_twisted.event import encode_jittered_retry
from sse_twisted.observer import Observer
from sse_twisted.ops.throttle import INTERVAL, LogSummary
from sse_twisted.web import leave_out_of_access_log

LOG_INTERVAL = INTERVAL
"""
Refusals are summed up in one log line per this many seconds at most, so
that a crowd at the door does not flood the log.
"""


class ClientLimit(Service):
    """
    Turns new streams away while C{max_clients} are open. Open streams are
    never touched; once one closes, the next stream is accepted.
    """

    log = Logger()

    def __init__(
        self,
        open_streams: Callable[[], int],
        max_clients: int,
        *,
        clock: IReactorTime,
        retry: int,
        observer: Observer | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """
        @param open_streams: Returns how many streams are open, such as
            C{hub.__len__}.
        @param max_clients: How many streams may be open at once.
        @param clock: Times the log lines.
        @param retry: The usual reconnection delay, in milliseconds.
        @param observer: Told of each refusal.
        @param jitter: Returns a fraction in [0, 1) of extra delay.
        """
        self._open_streams = open_streams
        self._max_clients = max_clients
        self._retry = retry
        self._observer = observer
        self._jitter = jitter
        self._refusals = LogSummary(
            clock, self._log_refusals, interval=LOG_INTERVAL, first_after=LOG_INTERVAL
        )

    def admits(self) -> bool:
        """
        @return: Whether one more stream may be opened now.
        """
        return self._open_streams() < self._max_clients

    def refuse(self, request: Request) -> None:
        """
        Answer C{request}, whose stream headers are set, with only a
        C{retry:} field, and end the response. Over HTTP/1.x the connection
        is closed too, so that a refused client holds no descriptor while
        it waits. The request stays out of the access log: refusals are
        summed up in one line a second at most.

        @param request: The request for a stream.
        """
        channel = request.channel
        if isinstance(channel, HTTPChannel):
            request.setHeader("Connection", "close")
            channel.persistent = False
        request.write(encode_jittered_retry(self._retry, self._jitter))
        leave_out_of_access_log(request)
        request.finish()
        if self._observer is not None:
            self._observer.refused()
        self._refusals.add()

    def stopService(self) -> None:
        """
        Log the refusals not yet logged.
        """
        super().stopService()
        self._refusals.flush()

    def _log_refusals(self, refused: int) -> None:
        self.log.warn(
            "streams refused: {refused}; --max-clients {limit} reached",
            refused=refused,
            limit=self._max_clients,
        )
