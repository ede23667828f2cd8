"""
The client against ssedemo itself, in process on 127.0.0.1: events with
ids, topics, C{resync}, a restart resumed without loss, publish receipts
and refusals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from test_client_awkward import reactor, take
from test_integration import STATIC
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort

from sse_twisted.app import Settings, SSEApp
from sse_twisted.client.eventsource import EventSource, Reconnecting
from sse_twisted.client.publish import PublishRefused, Receipt, publish
from sse_twisted.hub import Hub
from sse_twisted.service import sse_service
from sse_twisted.transport.eager import EagerTCPServerEndpoint

GOTCHA = '{"message": "Gotcha"}'


class Ssedemo:
    """
    ssedemo's whole server on 127.0.0.1, with a quick C{retry:} (100 ms) and
    no heartbeat; it can be stopped and started again on the same port,
    keeping its hub (and so its history).
    """

    def __init__(self) -> None:
        self.hub = Hub(reactor())
        self.app = SSEApp(self.hub, Settings(static=STATIC, retry=100))
        self.port = 0
        self.service: MultiService | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listening: list[IListeningPort] = []
        port = self.port

        class Endpoint:
            def listen(self, factory: Any) -> Deferred[IListeningPort]:
                endpoint = EagerTCPServerEndpoint(
                    reactor(), port, interface="127.0.0.1"
                )
                return endpoint.listen(factory).addCallback(
                    lambda p: listening.append(p) or p
                )

        self.service = sse_service(
            self.hub,
            self.app.site(),
            Endpoint(),  # type: ignore[arg-type]
            clock=reactor(),
            heartbeat=0,
            keepalive=0,
            retry=100,
        )
        self.service.startService()
        self.port = listening[0].getHost().port

    async def stop(self) -> None:
        if self.service is not None and self.service.running:
            await self.service.stopService()


@pytest_twisted.async_yield_fixture
async def ssedemo() -> AsyncIterator[Ssedemo]:
    server = Ssedemo()
    server.start()
    yield server
    await server.stop()


@pytest_twisted.ensureDeferred
async def test_events_with_ids_and_topics(ssedemo: Ssedemo) -> None:
    source = EventSource(f"{ssedemo.url}/sse?topic=news", reactor=reactor())
    [greeting] = await take(source, 1)
    assert (greeting.type, greeting.data, greeting.id) == ("message", GOTCHA, "")
    receipt = await publish(
        f"{ssedemo.url}/publish", "hi", event="note", topic="news", reactor=reactor()
    )
    await publish(f"{ssedemo.url}/publish", "elsewhere", topic="other")
    [event] = await take(source, 1)
    await source.close()
    assert (event.type, event.data, event.id) == ("note", "hi", receipt.id)
    assert event.origin == ssedemo.url
    assert receipt == Receipt(
        receipt.id, 1, "news", {"id": receipt.id, "delivered": 1, "topic": "news"}
    )
    assert source.last_event_id == receipt.id


@pytest_twisted.ensureDeferred
async def test_an_unknown_last_event_id_gets_a_resync(ssedemo: Ssedemo) -> None:
    source = EventSource(
        f"{ssedemo.url}/sse", reactor=reactor(), last_event_id="no-such-id"
    )
    events = await take(source, 2)
    await source.close()
    assert [e.type for e in events] == ["message", "resync"]
    assert '"lastEventId": "no-such-id"' in events[1].data


@pytest_twisted.ensureDeferred
async def test_a_restart_is_resumed_without_loss(ssedemo: Ssedemo) -> None:
    """
    Events published while the server was down reach the client when it
    comes back: it reconnects after the server's C{retry:}, sending the
    last id, and gets exactly what it missed, once.
    """
    source = EventSource(f"{ssedemo.url}/sse", reactor=reactor(), random=lambda: 0.0)
    errors: list[Exception] = []
    source.on_error = errors.append
    await take(source, 1)
    before = ssedemo.hub.publish("before")
    assert [e.data for e in await take(source, 1)] == ["before"]
    await ssedemo.stop()
    missed = [ssedemo.hub.publish(f"missed {n}") for n in range(3)]
    ssedemo.start()
    events = await take(source, 4)
    await source.close()
    assert [e.data for e in events] == [GOTCHA, "missed 0", "missed 1", "missed 2"]
    assert [e.id for e in events[1:]] == [r.id for r in missed]  # type: ignore[union-attr]
    assert isinstance(errors[0], Reconnecting)
    assert 0.05 <= errors[0].delay <= 0.1  # the server's retry: 100 ms, jittered
    assert before is not None


@pytest_twisted.ensureDeferred
async def test_publish_refusals_carry_the_servers_error(ssedemo: Ssedemo) -> None:
    """
    A publish the server refuses raises L{PublishRefused} with its status
    and the server's error text: a key with a line break, a bad topic.
    """
    with pytest.raises(PublishRefused) as refused:
        await publish(f"{ssedemo.url}/publish", "x", key="a\nb", reactor=reactor())
    assert refused.value.status == 400
    assert refused.value.error.startswith("key must be a string of 1 to 128")
    with pytest.raises(PublishRefused) as refused:
        await publish(f"{ssedemo.url}/publish", "x", topic="no spaces")
    assert refused.value.status == 400 and "topic names" in refused.value.error


@pytest_twisted.ensureDeferred
async def test_publish_with_a_key_makes_a_retained_value(ssedemo: Ssedemo) -> None:
    """
    C{publish(..., key=...)} sends the key: the event becomes the retained
    value that a stream with C{?snapshot=1} starts with.
    """
    receipt = await publish(
        f"{ssedemo.url}/publish", "42", key="AAPL", reactor=reactor()
    )
    source = EventSource(f"{ssedemo.url}/sse?snapshot=1", reactor=reactor())
    events = await take(source, 3)
    await source.close()
    assert [(e.type, e.data, e.id) for e in events[1:]] == [
        ("message", "42", receipt.id),
        ("snapshot", '{"count": 1}', receipt.id),
    ]


@pytest_twisted.ensureDeferred
async def test_publish_sends_data_as_the_string_given(ssedemo: Ssedemo) -> None:
    source = EventSource(f"{ssedemo.url}/sse", reactor=reactor())
    await take(source, 1)
    await publish(f"{ssedemo.url}/publish", '{"a": 1}', reactor=reactor())
    [event] = await take(source, 1)
    await source.close()
    assert event.data == '{"a": 1}'
