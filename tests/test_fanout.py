"""
Tests for the compiled fan-out: L{sse_twisted._fanout}'s leases and sets,
the eager transport's lease (revoked before its socket closes, on every
path), L{sse_twisted.stream.StreamGroup}, and which fan-out runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from certificate import make_certificate
from test_eager import TIMEOUT, Accepted, Collector, connected_pair, tick
from test_integration import CHANGED, RawClient, Server, reactor_, server, until
from twisted.internet import defer, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.main import CONNECTION_LOST
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from sse_twisted.fanout import choose_fanout
from sse_twisted.stream import EventStream, StreamGroup
from sse_twisted.transport.compiled import PURE_PYTHON
from sse_twisted.transport.eager import EagerServer

_fanout = pytest.importorskip("sse_twisted._fanout")
Lease, DirectSet = _fanout.Lease, _fanout.DirectSet

__all__ = ["server"]  # the fixture, used here too

ROOT = Path(__file__).resolve().parent.parent


def socket_pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    b.setblocking(False)
    return a, b


def direct_lease(sock: socket.socket) -> Any:
    lease = Lease(sock)
    lease.queued = False
    return lease


# The compiled types.


def test_lease_starts_held_back_and_never_sends_once_revoked() -> None:
    a, b = socket_pair()
    lease = Lease(a)
    assert (lease.fd, lease.queued, lease.direct) == (a.fileno(), True, False)
    lease.queued = False
    assert lease.direct
    lease.paused = True
    assert not lease.direct
    lease.paused = False
    lease.revoke()
    assert (lease.fd, lease.revoked, lease.direct) == (-1, True, False)
    lease.queued = False  # a revoked lease stays revoked
    assert not lease.direct
    a.close(), b.close()


def test_lease_takes_its_socket_by_name_too() -> None:
    a, b = socket_pair()
    assert Lease(socket=a).fd == a.fileno()
    with pytest.raises(TypeError):
        Lease()
    with pytest.raises(TypeError):
        Lease(a, b)
    with pytest.raises(AttributeError, match="fileno"):
        Lease(object())
    a.close(), b.close()


def test_lease_refuses_a_closed_socket() -> None:
    a, b = socket_pair()
    a.close()
    with pytest.raises(ValueError, match="closed"):
        Lease(a)
    b.close()


def test_send_writes_the_chunk_to_every_direct_lease() -> None:
    pairs = [socket_pair() for _ in range(3)]
    directs = DirectSet()
    for n, (a, _) in enumerate(pairs):
        assert directs.add(direct_lease(a), n)
    assert len(directs) == 3
    assert directs.send(b"chunk") == ([], [])
    assert [b.recv(100) for _, b in pairs] == [b"chunk"] * 3


def test_send_hands_held_back_leases_to_python() -> None:
    (a, b), (c, d) = socket_pair(), socket_pair()
    directs = DirectSet()
    queued, paused = direct_lease(a), direct_lease(c)
    queued.queued = True
    paused.paused = True
    directs.add(queued, "queued")
    directs.add(paused, "paused")
    assert directs.send(b"x") == ([], ["queued", "paused"])
    with pytest.raises(BlockingIOError):
        b.recv(1)
    with pytest.raises(BlockingIOError):
        d.recv(1)


def test_partial_send_reports_what_was_sent_and_holds_the_lease() -> None:
    a, _b = socket_pair()
    lease = direct_lease(a)
    directs = DirectSet()
    directs.add(lease, "slow")
    big = b"z" * (16 * 1024 * 1024)
    [(owner, sent)], held = directs.send(big)
    assert (owner, held) == ("slow", [])
    assert 0 < sent < len(big)
    assert lease.queued
    assert directs.send(b"next") == ([], ["slow"])


def test_send_to_a_gone_peer_reports_nothing_sent() -> None:
    a, b = socket_pair()
    b.close()
    directs = DirectSet()
    directs.add(direct_lease(a), "gone")
    assert directs.send(b"x") == ([("gone", 0)], [])


def test_discard_keeps_the_others() -> None:
    pairs = [socket_pair() for _ in range(4)]
    directs = DirectSet()
    for n, (a, _) in enumerate(pairs):
        directs.add(direct_lease(a), n)
    assert not directs.add(direct_lease(pairs[0][0]), 0)  # in already
    assert directs.discard(0) and directs.discard(2)
    assert not directs.discard(0)
    assert (len(directs), 0 in directs, 1 in directs, 3 in directs) == (2, 0, 1, 1)
    directs.send(b"y")
    assert [b.recv(10) if n in (1, 3) else None for n, (_, b) in enumerate(pairs)] == [
        None,
        b"y",
        None,
        b"y",
    ]


def test_set_in_a_reference_cycle_is_collected() -> None:
    import gc
    import weakref

    class Owner:
        pass

    a, _ = socket_pair()
    directs = DirectSet()
    owner = Owner()
    owner.directs = directs  # type: ignore[attr-defined]
    directs.add(direct_lease(a), owner)
    gone = weakref.ref(owner)
    del owner, directs
    gc.collect()
    assert gone() is None


# The transport's lease: revoked before its socket closes, on every path.


class CloseSpy:
    """
    Stands in for a transport's socket and notes, when it is closed, whether
    its lease was revoked by then and whether a broadcast would still send
    to it.
    """

    def __init__(self, wrapped: socket.socket, lease: Any, directs: Any) -> None:
        self._wrapped = wrapped
        self._lease = lease
        self._directs = directs
        self.at_close: list[tuple[bool, Any]] = []
        self.send_error: OSError | None = None

    def close(self) -> None:
        self.at_close.append((self._lease.revoked, self._directs.send(b"")))
        self._wrapped.close()

    def send(self, data: bytes) -> int:
        if self.send_error is not None:
            raise self.send_error
        sent: int = self._wrapped.send(data)
        return sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


@defer.inlineCallbacks
def leased_pair(reactor: Any) -> Generator[Any, Any, Any]:
    """
    An eager connection whose lease is in a set, its socket spied on.
    """
    port, server, client = yield connected_pair(reactor, 1)
    lease = server.lease(Lease)
    assert lease is not None and lease.direct
    directs = DirectSet()
    directs.add(lease, "stream")
    spy = CloseSpy(server.socket, lease, directs)
    server.socket = spy
    return port, server, client, spy


@defer.inlineCallbacks
def closed(reactor: Any, port: Any, spy: CloseSpy) -> Generator[Any, Any, None]:
    """
    Wait until the server end is gone, then check that the lease was revoked
    before its socket closed, and that nothing was sent to it then.
    """
    yield Accepted.connections[0].lost.addTimeout(TIMEOUT, reactor)
    assert spy.at_close == [(True, ([], ["stream"]))]
    yield port.stopListening()


def reset_by_the_peer(reactor: Any, server: EagerServer, client: Any) -> None:
    client.transport.abortConnection()


def lose_connection(reactor: Any, server: EagerServer, client: Any) -> None:
    server.loseConnection()


def abort_connection(reactor: Any, server: EagerServer, client: Any) -> None:
    server.abortConnection()


def shutdown(reactor: Any, server: EagerServer, client: Any) -> None:
    """
    What the reactor does to every connection when it stops.
    """
    reactor.removeReader(server)
    reactor.removeWriter(server)
    server.connectionLost(Failure(CONNECTION_LOST))


def failed_write(reactor: Any, server: EagerServer, client: Any) -> None:
    server.socket.send_error = ConnectionResetError()  # type: ignore[attr-defined]
    server.write(b"lost")


@pytest.mark.parametrize(
    "close",
    [
        reset_by_the_peer,
        lose_connection,
        abort_connection,
        shutdown,
        failed_write,
    ],
)
@pytest_twisted.inlineCallbacks
def test_lease_revoked_before_the_socket_closes(
    reactor: Any, close: Any
) -> Generator[Any, Any, None]:
    port, server, client, spy = yield leased_pair(reactor)
    close(reactor, server, client)
    yield closed(reactor, port, spy)


@pytest_twisted.inlineCallbacks
def test_lease_revoked_on_start_tls(
    reactor: Any, tmp_path: Path
) -> Generator[Any, Any, None]:
    """
    Once a connection starts TLS, nothing is sent to its descriptor
    directly, even before any TLS bytes.
    """
    certificate = make_certificate(tmp_path)
    port, server, client, spy = yield leased_pair(reactor)
    lease = server._lease
    assert lease is not None
    server.startTLS(
        ssl.DefaultOpenSSLContextFactory(str(certificate.key), str(certificate.cert))
    )
    assert lease.revoked and server.lease(Lease) is lease
    assert spy._directs.send(b"RAW") == ([], ["stream"])
    server.abortConnection()
    yield closed(reactor, port, spy)
    assert b"RAW" not in client.received


@pytest_twisted.inlineCallbacks
def test_lease_revoked_before_close_on_a_slow_client_drop(
    server: Server,
) -> Generator[Any, Any, None]:
    """
    A stream dropped for falling too far behind (as by the hub's fan-out).
    """
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    stalled.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
    yield until(lambda: len(server.hub) == 1)
    stream = stream_of(server)
    transport = stream._transport
    assert isinstance(transport, EagerServer)
    lease = stream.lease(Lease)
    assert lease is not None
    directs = DirectSet()
    directs.add(lease, "stream")
    spy = CloseSpy(transport.socket, lease, directs)
    transport.socket = spy  # type: ignore[assignment]
    for n in range(200):  # 12.5 MiB: past the socket buffers and the backlog
        if not len(server.hub):
            break
        server.hub.publish(f"{n} " + "y" * 65536)
        yield tick(reactor_())
    yield until(lambda: bool(spy.at_close))
    assert spy.at_close == [(True, ([], ["stream"]))]
    stalled.close()


@pytest_twisted.inlineCallbacks
def test_lease_held_back_while_bytes_are_queued(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    While the kernel does not take a write, the connection's lease is held
    back; once the queue has drained, it is direct again.
    """
    port, server, client = yield connected_pair(reactor, 8 * 1024 * 1024)
    lease = server.lease(Lease)
    client.transport.pauseProducing()
    server.write(b"q" * (8 * 1024 * 1024))
    assert server._tempDataLen and lease.queued
    client.transport.resumeProducing()
    yield client.complete.addTimeout(TIMEOUT, reactor)
    for _ in range(1000):
        if lease.direct:
            break
        yield tick(reactor)
    assert lease.direct
    server.loseConnection()
    yield client.lost.addTimeout(TIMEOUT, reactor)
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_reused_descriptor_gets_nothing(reactor: Any) -> Generator[Any, Any, None]:
    """
    The risk itself: a connection closes while still in a set (nobody
    discarded it), and a new connection gets its descriptor number. A
    broadcast to the set must not reach the new connection.
    """
    port, server, client = yield connected_pair(reactor, 1)
    lease = server.lease(Lease)
    directs = DirectSet()
    directs.add(lease, "old")
    number = server.fileno()
    server.abortConnection()
    yield client.lost.addTimeout(TIMEOUT, reactor)
    newcomer = Collector(1)
    yield TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
        Factory.forProtocol(lambda: newcomer)
    )
    for _ in range(1000):
        if len(Accepted.connections) == 2:
            break
        yield tick(reactor)
    accepted = Accepted.connections[1]
    numbers = {accepted.transport.fileno(), newcomer.transport.fileno()}
    assert number in numbers, "the descriptor number was not reused: test is moot"
    assert directs.send(b"LEAK") == ([], ["old"])
    newcomer.transport.write(b"ping")
    yield newcomer.complete.addTimeout(TIMEOUT, reactor)
    assert bytes(newcomer.received) == b"<ping>\n"
    accepted.transport.loseConnection()
    yield newcomer.lost.addTimeout(TIMEOUT, reactor)
    yield port.stopListening()


# Streams in groups, on the whole server.


def stream_of(server: Server) -> EventStream:
    [stream] = server.hub._subscriptions  # type: ignore[attr-defined]
    assert isinstance(stream, EventStream)
    return stream


@pytest_twisted.inlineCallbacks
def test_http11_stream_on_eager_tcp_is_sent_to_directly(
    server: Server,
) -> Generator[Any, Any, None]:
    client = yield server.stream()
    yield client.wait_for_events(1)
    stream = stream_of(server)
    if choose_fanout().name == "c":
        yield until(lambda: stream._lease is not None and stream._lease.direct)
    else:
        assert stream._lease is None
    receipt = server.hub.publish("direct")
    assert receipt.delivered == 1
    yield client.wait_for(lambda: "direct" in client.data())
    assert client.received.endswith(b"\r\n")  # whole chunks only
    client.transport.loseConnection()
    yield until(lambda: len(server.hub) == 0)


@pytest_twisted.inlineCallbacks
def test_http10_stream_is_written_by_python(
    server: Server,
) -> Generator[Any, Any, None]:
    client = yield server.connect(b"GET /sse HTTP/1.0\r\nHost: t\r\n\r\n")
    yield until(lambda: len(server.hub) == 1)
    stream = stream_of(server)
    assert stream.lease(Lease) is None
    assert server.hub.publish("plain").delivered == 1
    yield client.wait_for(lambda: b"data: plain\n\n" in client.received)
    assert client.received.partition(b"\r\n\r\n")[2].startswith(b"retry:")
    client.transport.loseConnection()
    yield until(lambda: len(server.hub) == 0)


@pytest_twisted.inlineCallbacks
def test_partial_send_queues_the_rest_in_order_then_rejoins(
    server: Server,
) -> Generator[Any, Any, None]:
    """
    A client that stops reading: sends go in part, the rest is queued, the
    stream is written by Python until its queue drains; everything arrives
    once, in order, and then the stream is back in the compiled loop.
    """
    client = yield server.stream()
    yield client.wait_for_events(1)
    stream = stream_of(server)
    client.transport.pauseProducing()
    transport = stream._transport
    assert isinstance(transport, EagerServer)
    filler = "f" * 100_000
    published = 0
    while not transport._tempDataLen and published < 200:  # 20 MB at most
        assert server.hub.publish(f"{published} {filler}").delivered == 1
        published += 1
    assert transport._tempDataLen, "the kernel took everything: test is moot"
    if stream._lease is not None:
        assert not stream._lease.direct
    for n in range(published, published + 3):  # behind the queue
        assert server.hub.publish(f"{n} {filler}").delivered == 1
    client.transport.resumeProducing()
    server.hub.publish("last")
    yield client.wait_for(lambda: "last" in client.data())
    numbers = [d.split()[0] for d in client.data() if d[:1].isdigit()]
    assert numbers == [str(n) for n in range(published + 3)]
    if stream._lease is not None:
        yield until(lambda: stream._lease.direct)  # type: ignore[union-attr]
    client.transport.loseConnection()
    yield until(lambda: len(server.hub) == 0)


@pytest_twisted.inlineCallbacks
def test_api_counts_each_stream_once_on_either_path(
    server: Server,
) -> Generator[Any, Any, None]:
    clients: list[RawClient] = []
    for topic in ("default", "default", "other"):
        client = yield server.stream(f"/sse?topic={topic}")
        clients.append(client)
        yield client.wait_for_events(1)
    response = yield server.request("POST", "/api", b"{}", "application/json")
    assert response.status == 200
    assert b'"delivered": 2' in response.body
    for client in clients[:2]:
        yield client.wait_for(lambda c=client: CHANGED in c.data())
        client.transport.loseConnection()
    assert CHANGED not in clients[2].data()
    clients[2].transport.loseConnection()
    yield until(lambda: len(server.hub) == 0)


class Refusing(EventStream):
    """
    A stream whose connection refuses to queue.
    """

    def _queue(self, data: bytes) -> None:
        raise OSError("refused")


def test_group_reports_a_stream_that_fails_to_queue() -> None:
    a, b = socket_pair()
    group = StreamGroup(Lease, DirectSet)
    stream = Refusing.__new__(Refusing)
    lease = direct_lease(a)
    group._direct.add(lease, stream)
    b.close()  # the send fails: the rest is to be queued, which raises
    assert group.write(b"event") == [stream]


# Which fan-out runs.


def test_compiled_fanout_runs_where_built() -> None:
    fanout = choose_fanout({})
    assert (fanout.name, fanout.why) == ("c", "the compiled send loop")
    group = fanout.groups()
    assert isinstance(group, StreamGroup)


@pytest.mark.parametrize("value", ["1", "yes"])
def test_pure_python_forced_by_the_environment(value: str) -> None:
    fanout = choose_fanout({PURE_PYTHON: value})
    assert (fanout.name, fanout.why) == ("python", f"{PURE_PYTHON} is set")


def test_zero_does_not_force_python() -> None:
    assert choose_fanout({PURE_PYTHON: "0"}).name == "c"


def test_python_fanout_where_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sse_twisted._fanout", None)
    fanout = choose_fanout({})
    assert fanout.name == "python"
    assert fanout.why.startswith("the compiled send loop is not built")


def build_ext(build: Path, **environ: str) -> list[Path]:
    """
    Build the extension with setup.py into C{build}.

    @param environ: Environment variables for the build, such as C{CC}.
    @return: The modules in the build's library directory afterwards.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "CFLAGS")}
    where = ["--build-lib", str(build / "lib"), "--build-temp", str(build / "temp")]
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", *where],
        cwd=ROOT,
        env=env | environ,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return sorted((build / "lib").rglob("_fanout*.so"))


def test_failed_build_does_not_package_an_earlier_one(tmp_path: Path) -> None:
    """
    pip builds a local directory in place: a second install from it without a
    compiler must not ship the module an earlier install compiled there.
    """
    assert len(build_ext(tmp_path)) == 1
    assert build_ext(tmp_path, CC="/bin/false") == []


def test_extension_builds_without_warnings(tmp_path: Path) -> None:
    """
    Newer compilers make some warnings errors (GCC 14: incompatible pointer
    types), and a failed build silently means the Python fan-out.
    """
    assert len(build_ext(tmp_path, CFLAGS="-Werror")) == 1
