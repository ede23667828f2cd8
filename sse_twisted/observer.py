"""
What the server tells whoever watches it, such as its metrics.

The hub, the streams and the web layer call an L{Observer} at the points
where they already count: once per fan-out (with the number of streams),
once per batch of opened streams, once per resume, drop or refusal; never
once per copy of an event. Without an observer they call nothing.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    """
    Told what happens to streams and events. Observers only watch: they
    must not raise, and they change nothing.
    """

    def streams_opened(self, count: int) -> None:
        """
        C{count} streams were opened since the last call.
        """

    def published(self) -> None:
        """
        One event was published through this server.
        """

    def fanned_out(self, streams: int, seconds: float) -> None:
        """
        One event was written to C{streams} streams, which took C{seconds}.
        """

    def resumed(self, replayed: bool) -> None:
        """
        A client resumed after an event id: the events it missed were
        replayed, or (C{replayed} false) it was told to resynchronise.
        """

    def conflated(self, count: int) -> None:
        """
        C{count} queued events were discarded on a stream that is behind,
        because newer ones of the same topic and key replaced them.
        """

    def dropped_slow(self) -> None:
        """
        A stream was dropped because its client read too slowly.
        """

    def refused(self) -> None:
        """
        A stream was refused because too many were open.
        """
