"""
The fan-out under churn: clients on different topics connect and vanish at
random (resets, closes, stalls) while events with per-topic payloads are
published fast. Every client must receive only well-formed chunks, each one
whole event of one of its own topics, in order, and nothing else, ever:
in one process, a descriptor freed by a closed connection is soon reused by
a new one, so any event written to a stale descriptor lands in some other
client's stream and shows here.

Runs on whichever fan-out the environment chooses (the suite runs on both).
"""

from __future__ import annotations

import json
import random
import re
import select
import socket
import struct
import time
import urllib.request
from collections.abc import Generator
from typing import Any

import pytest_twisted
from test_integration import Server, server, until
from twistd_process import DEADLINE, TwistdServer
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

__all__ = ["server"]  # the fixture, used here too

TOPICS = ("t0", "t1", "t2", "t3")
OPENING = b'retry: 3000\n\ndata: {"message": "Gotcha"}\n\n'
_EVENT = re.compile(rb"id: [0-9a-f]+-(\d+)\ndata: (t\d)\|(\d+)\|(\d+)\|(.*)\n\n", re.S)
_SIZE = re.compile(rb"[0-9a-f]+")
STEPS = 300
SECONDS = 60.0


def payload(topic: str, seq: int, size: int) -> str:
    """
    The data of event C{seq} of C{topic}: unique, and checkable byte by byte.
    """
    body = (f"{topic}.{seq};" * (size // 6 + 1))[:size]
    return f"{topic}|{seq}|{size}|{body}"


class StrictClient(Protocol):
    """
    Opens a stream and checks every byte that arrives: the response head,
    then chunks, each exactly one event of its topics (after the opening).
    """

    def __init__(self, topics: tuple[str, ...]) -> None:
        self.topics = topics
        self.buffer = b""
        self.head = True
        self.opened = False
        self.ended = False
        self.errors: list[str] = []
        self.last: dict[str, int] = {}
        self.events = 0
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        query = "&".join(f"topic={t}" for t in self.topics)
        request = f"GET /sse?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        self.transport.write(request)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(None)

    def dataReceived(self, data: bytes) -> None:
        if self.ended:
            self.errors.append(f"bytes after the last chunk: {data[:80]!r}")
            return
        self.buffer += data
        if self.head:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 200 ") or (
                b"transfer-encoding: chunked" not in head.lower()
            ):
                self.errors.append(f"bad head: {head[:200]!r}")
            self.head, self.buffer = False, rest
        while self._chunk():
            pass

    def _chunk(self) -> bool:
        size_line, found, rest = self.buffer.partition(b"\r\n")
        if not found:
            if len(size_line) > 16:
                self.errors.append(f"bad chunk size: {size_line[:80]!r}")
                self.buffer = b""
            return False
        if not _SIZE.fullmatch(size_line):
            self.errors.append(f"bad chunk size: {size_line[:80]!r}")
            self.buffer = b""
            return False
        size = int(size_line, 16)
        if len(rest) < size + 2:
            return False
        chunk, end, self.buffer = rest[:size], rest[size : size + 2], rest[size + 2 :]
        if end != b"\r\n":
            self.errors.append(f"chunk not ended by CRLF: {end!r}")
            self.buffer = b""
            return False
        if size == 0:
            self.ended = True
        else:
            self._event(chunk)
        return True

    def _event(self, chunk: bytes) -> None:
        if not self.opened:
            self.opened = True
            if chunk != OPENING:
                self.errors.append(f"bad opening: {chunk[:80]!r}")
            return
        match = _EVENT.fullmatch(chunk)
        if match is None:
            self.errors.append(f"not one event: {chunk[:80]!r}")
            return
        topic, seq, size = match[2].decode(), int(match[3]), int(match[4])
        data = b"|".join((match[2], match[3], match[4], match[5]))
        if topic not in self.topics:
            self.errors.append(f"event of {topic}, not of {self.topics}")
        elif data.decode() != payload(topic, seq, size):
            self.errors.append(f"corrupt event {topic} {seq}")
        elif seq <= self.last.get(topic, -1):
            self.errors.append(f"{topic} {seq} after {self.last[topic]}")
        else:
            self.last[topic] = seq
            self.events += 1


@pytest_twisted.inlineCallbacks
def test_no_cross_talk_under_churn(server: Server) -> Generator[Any, Any, None]:
    from twisted.internet import reactor

    rng = random.Random(20261130)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.port)
    clients: list[StrictClient] = []
    live: list[StrictClient] = []
    stalled: set[StrictClient] = set()
    seqs = dict.fromkeys(TOPICS, 0)
    vanished = {"reset": 0, "close": 0}
    deadline = reactor.seconds() + SECONDS

    def connect() -> Any:
        topics = tuple(rng.sample(TOPICS, rng.randint(1, 2)))
        client = StrictClient(topics)
        clients.append(client)
        live.append(client)
        return endpoint.connect(Factory.forProtocol(lambda: client))

    def publish() -> None:
        topic = rng.choice(TOPICS)
        size = rng.choice([10, 100, 1000, 20_000]) + rng.randint(0, 9)
        server.hub.publish(payload(topic, seqs[topic], size), topic=topic)
        seqs[topic] += 1

    for _ in range(20):
        yield connect()
    for _ in range(STEPS):
        assert reactor.seconds() < deadline, "the churn took too long"
        roll = rng.random()
        if roll < 0.25:
            yield connect()
        elif roll < 0.45 and live:
            client = live.pop(rng.randrange(len(live)))
            stalled.discard(client)
            if rng.random() < 0.5:
                client.transport.abortConnection()  # type: ignore[union-attr]
                vanished["reset"] += 1
            else:
                client.transport.loseConnection()  # type: ignore[union-attr]
                vanished["close"] += 1
        elif roll < 0.55 and live:
            client = rng.choice(live)
            if client in stalled:
                client.transport.resumeProducing()  # type: ignore[union-attr]
                stalled.discard(client)
            else:
                client.transport.pauseProducing()  # type: ignore[union-attr]
                stalled.add(client)
        for _ in range(rng.randint(1, 8)):
            publish()
        yield deferLater(reactor, 0, lambda: None)
    for client in stalled:
        client.transport.resumeProducing()  # type: ignore[union-attr]
    # Let every stream (re)open, then one last event per topic for all.
    yield until(lambda: all(c.opened or c.lost.called for c in live))
    final = {topic: seqs[topic] for topic in TOPICS}
    for topic in TOPICS:
        server.hub.publish(payload(topic, final[topic], 5), topic=topic)
    yield until(
        lambda: all(
            c.lost.called or all(c.last.get(t) == final[t] for t in c.topics)
            for c in live
        )
    )
    for client in live:
        client.transport.loseConnection()  # type: ignore[union-attr]
    yield until(lambda: len(server.hub) == 0)
    errors = [(c.topics, e) for c in clients for e in c.errors]
    assert errors == []
    assert vanished["reset"] > 20 and vanished["close"] > 20
    assert sum(c.events for c in clients) > 10_000


class RawStream:
    """
    One client of a real server: a plain socket, its bytes checked by a
    L{StrictClient}.
    """

    def __init__(self, port: int, topics: tuple[str, ...]) -> None:
        self.check = StrictClient(topics)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        query = "&".join(f"topic={t}" for t in topics)
        self.sock.sendall(f"GET /sse?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        self.sock.setblocking(False)

    def read(self) -> bool:
        """
        Take what has arrived; C{False} once the server has closed.
        """
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return True
            except ConnectionError:
                return False
            if not data:
                return False
            self.check.dataReceived(data)

    def vanish(self, reset: bool) -> None:
        if reset:  # RST instead of FIN
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        self.sock.close()


def test_no_cross_talk_in_a_real_server() -> None:
    """
    The same hunt against C{twistd ssedemo} in its own process, as a user
    runs it: every descriptor it reuses is one of its own connections.
    """
    rng = random.Random(20261201)
    server = TwistdServer(args=["--heartbeat", "0"]).start()
    clients: list[RawStream] = []
    live: list[RawStream] = []
    seqs = dict.fromkeys(TOPICS, 0)
    deadline = time.monotonic() + SECONDS

    def publish(topic: str, size: int) -> None:
        body = json.dumps({"data": payload(topic, seqs[topic], size), "topic": topic})
        request = urllib.request.Request(
            server.url + "/publish",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            assert response.status == 200
        seqs[topic] += 1

    def read_all() -> None:
        for client in list(live):
            if not client.read():
                live.remove(client)

    try:
        for step in range(STEPS):
            assert time.monotonic() < deadline, "the churn took too long"
            if rng.random() < 0.3 or len(live) < 5:
                client = RawStream(server.port, tuple(rng.sample(TOPICS, 2)))
                clients.append(client)
                live.append(client)
            if rng.random() < 0.25 and live:
                client = live.pop(rng.randrange(len(live)))
                client.vanish(reset=step % 2 == 0)
            for _ in range(rng.randint(1, 3)):
                publish(rng.choice(TOPICS), rng.choice([10, 1000, 30_000]))
            read_all()
        final = dict(seqs)
        for topic in TOPICS:
            publish(topic, 5)
        while any(
            c.check.last.get(t) != final[t] for c in live for t in c.check.topics
        ):
            assert time.monotonic() < deadline, "the last events did not arrive"
            read_all()
            # Until one of the streams has more to read (or a short while).
            select.select([c.sock for c in live], [], [], 0.1)
    finally:
        for client in clients:
            client.sock.close()
        server.stop()
    errors = [(c.check.topics, e) for c in clients for e in c.check.errors]
    assert errors == []
    assert sum(c.check.events for c in clients) > 1000
