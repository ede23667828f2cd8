"""
Conflation on real sockets: a client that stops reading while thousands of
keyed events are published stays connected on a conflated topic and ends
with every key's newest value; on a plain topic it is dropped as before.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from memory_http import dechunk
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath

from sse_twisted.app import Settings, SSEApp
from sse_twisted.auth.gate import Patterns
from sse_twisted.fanout import choose_fanout
from sse_twisted.hub import Hub
from sse_twisted.log import MemoryLog
from sse_twisted.ops.metrics import Metrics
from sse_twisted.testing import parse

STATIC = FilePath(str(Path(__file__).parent.parent / "static"))
DEADLINE = 10.0
KEYS = 40
EVENTS = 10000
MAX_BACKLOG = 64 * 1024


def until(reactor: Any, condition: Callable[[], object], what: str) -> Deferred[None]:
    async def wait() -> None:
        for _ in range(int(DEADLINE / 0.005)):
            if condition():
                return
            await deferLater(reactor, 0.005, lambda: None)
        raise AssertionError(f"timed out waiting for {what}")

    return ensureDeferred(wait())


class StalledClient:
    """
    A stream on a socket with a small receive buffer, read only when told.
    """

    def __init__(self, port: int, query: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET /sse?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        self.sock.setblocking(False)
        self.raw = b""
        self.closed = False

    def read(self) -> None:
        while not self.closed:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                return
            except ConnectionError:
                self.closed = True
                return
            if not chunk:
                self.closed = True
            self.raw += chunk

    def events(self) -> list[Any]:
        body = self.raw.partition(b"\r\n\r\n")[2]
        return parse(dechunk(body)[0]).events


@pytest.mark.parametrize("conflated", [True, False])
@pytest_twisted.inlineCallbacks
def test_a_stalled_client_on_a_conflated_topic_catches_up(
    reactor: Any, conflated: bool
) -> Any:
    """
    Many more bytes than C{--max-backlog} of keyed events go to a client
    that does not read: on a conflated topic it stays connected and, once
    it reads, has the newest value of every key with ids increasing; on a
    plain topic it is dropped.
    """
    fanout = choose_fanout()
    metrics = Metrics()
    hub = Hub(
        reactor,
        MemoryLog(instance="t"),
        observer=metrics,
        groups=fanout.groups,
        conflated=Patterns(["prices.*"]).covers if conflated else None,
    )
    app = SSEApp(
        hub,
        Settings(static=STATIC, max_backlog=MAX_BACKLOG, fanout=fanout.name),
        observer=metrics,
    )
    endpoint = serverFromString(reactor, "eagertcp:0:interface=127.0.0.1")
    port = yield endpoint.listen(app.site())
    client = StalledClient(port.getHost().port, "topic=prices.us")
    try:
        yield until(reactor, lambda: len(hub) == 1, "the stream")
        newest: dict[str, tuple[str, str]] = {}
        padding = "x" * 1000
        for n in range(EVENTS):
            key = f"k{n % KEYS}"
            data = json.dumps({"key": key, "n": n, "pad": padding})
            receipt = hub.publish(data, topic="prices.us", key=key)
            newest[key] = (receipt.id, data)  # type: ignore[union-attr]
            if n % 100 == 99:
                yield deferLater(reactor, 0, lambda: None)
        assert EVENTS * 1000 > 2 * 4194304  # beyond the kernel's buffers too
        if not conflated:
            yield until(reactor, lambda: len(hub) == 0, "the drop")
            assert metrics.registry.get_sample_value(
                "ssedemo_streams_dropped_total", {"reason": "slow"}
            )
            return
        assert len(hub) == 1
        last = max(i for i, _ in newest.values())

        def caught_up() -> bool:
            client.read()
            return client.closed or any(
                e.last_event_id == last for e in client.events()
            )

        yield until(reactor, caught_up, "the newest event")
        assert not client.closed
        events = client.events()[1:]
        ids = [int(e.last_event_id[2:]) for e in events]
        assert ids == sorted(set(ids))
        final: dict[str, tuple[str, str]] = {}
        for event in events:
            final[json.loads(event.data)["key"]] = (event.last_event_id, event.data)
        assert final == newest
        assert len(events) < EVENTS
        conflated_count = metrics.registry.get_sample_value(
            "ssedemo_events_conflated_total"
        )
        assert conflated_count == EVENTS - len(events)
    finally:
        client.sock.close()
        yield port.stopListening()
