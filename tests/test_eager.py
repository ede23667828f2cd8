"""
Tests for L{sse_twisted.transport.eager}: eager sends on real loopback sockets lose and
reorder nothing, including when the kernel takes only part of a write.
"""

from __future__ import annotations

import errno
import os
import random
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, tcp
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ClientEndpoint,
    serverFromString,
)
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactor
from twisted.logger import capturedLogs, formatEvent
from twisted.python import log as legacy_log
from twisted.python.failure import Failure

from sse_twisted.transport.eager import (
    EagerAdoptedEndpoint,
    EagerPort,
    EagerServer,
    EagerTCPServerEndpoint,
)

TIMEOUT = 20


class Collector(Protocol):
    """
    The client end: collects bytes, can stop reading, tells when it has all.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = bytearray()
        self.complete: defer.Deferred[None] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.complete.called:
            self.complete.callback(None)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(None)


class Accepted(Protocol):
    """
    The server end; the test writes to its transport directly, and it
    answers what it receives with two writes (and a close, if asked).
    """

    connections: list[Accepted] = []

    def connectionMade(self) -> None:
        self.connections.append(self)
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"<" + data)
        self.transport.writeSequence([b">", b"\n"])
        if data == b"close":
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason
        self.lost.callback(None)


@defer.inlineCallbacks
def connected_pair(
    reactor: Any, expected: int, endpoint: IStreamServerEndpoint | None = None
) -> Generator[Any, Any, tuple[Any, EagerServer, Collector]]:
    """
    Listen with eager TCP on 127.0.0.1 (or on C{endpoint}) and connect one
    client.

    @return: The listening port, the server's transport and the client.
    """
    Accepted.connections = []
    if endpoint is None:
        endpoint = EagerTCPServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = yield endpoint.listen(Factory.forProtocol(Accepted))
    client = Collector(expected)
    yield TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
        Factory.forProtocol(lambda: client)
    )
    for _ in range(1000):
        if Accepted.connections:
            break
        yield tick(reactor)
    [accepted] = Accepted.connections
    assert isinstance(accepted.transport, EagerServer)
    return port, accepted.transport, client


@defer.inlineCallbacks
def hang_up(
    reactor: Any, port: Any, server: EagerServer, client: Collector
) -> Generator[Any, Any, None]:
    """
    Close the connection from the server's end, wait until the client sees
    it, and stop listening.
    """
    server.loseConnection()
    yield client.lost.addTimeout(TIMEOUT, reactor)
    yield port.stopListening()


def tick(reactor: Any) -> defer.Deferred[None]:
    """
    Let the reactor turn (1 ms).
    """
    return deferLater(reactor, 0.001, lambda: None)


def pieces(total: int, seed: int) -> list[bytes]:
    """
    Writes of varied sizes (1 byte to 300 KB), each byte numbered so that
    any loss or reordering shows.
    """
    rng = random.Random(seed)
    out, made = [], 0
    while made < total:
        size = min(rng.choice([1, 7, 100, 4096, 65536, 300_000]), total - made)
        out.append(bytes((made + i) % 251 for i in range(size)))
        made += size
    return out


@pytest_twisted.inlineCallbacks
def test_partial_writes_lose_and_reorder_nothing(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    With the client not reading, the kernel buffers fill, sends go partial
    and then queue; once the client reads, it gets every byte in order.
    """
    writes = pieces(8 * 1024 * 1024, seed=1)
    total = sum(map(len, writes))
    port, server, client = yield connected_pair(reactor, total)
    client.transport.pauseProducing()  # type: ignore[union-attr]
    for index, data in enumerate(writes):
        if index % 3:
            server.write(data)
        else:
            server.writeSequence([data[:5], data[5:]])
    assert server._tempDataLen > 0, "the kernel never refused bytes: test is moot"
    client.transport.resumeProducing()  # type: ignore[union-attr]
    yield client.complete.addTimeout(TIMEOUT, reactor)
    assert bytes(client.received) == b"".join(writes)
    yield hang_up(reactor, port, server, client)


@pytest_twisted.inlineCallbacks
def test_small_writes_go_out_at_once(reactor: Any) -> Generator[Any, Any, None]:
    """
    With nothing queued, a write reaches the kernel before it returns:
    nothing waits in Twisted's queue for the next turn of the loop.
    """
    port, server, client = yield connected_pair(reactor, 3 * 100)
    for _ in range(3):
        server.write(b"e" * 100)
        assert server._tempDataLen == 0 and server.dataBuffer == b""
    yield client.complete.addTimeout(TIMEOUT, reactor)
    assert bytes(client.received) == b"e" * 300
    yield hang_up(reactor, port, server, client)


@pytest_twisted.inlineCallbacks
def test_write_to_a_reset_peer_reports_a_lost_connection(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    Writing to a connection whose peer reset it raises nothing; the
    connection is reported lost as usual.
    """
    port, server, client = yield connected_pair(reactor, 1)
    client.transport.abortConnection()  # type: ignore[union-attr]
    yield client.lost
    accepted = Accepted.connections[0]
    for _ in range(100):
        server.write(b"x" * 65536)
        if accepted.lost.called:
            break
        yield tick(reactor)
    yield accepted.lost.addTimeout(TIMEOUT, reactor)
    assert accepted.reason is not None
    assert accepted.reason.check(ConnectionLost, ConnectionDone)
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_writes_after_lose_connection_are_queued_then_sent(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    Once the connection is closing, writes take Twisted's normal path, which
    still flushes them before the close.
    """
    port, server, client = yield connected_pair(reactor, 6)
    server.write(b"abc")
    server.loseConnection()
    server.write(b"def")
    yield client.lost.addTimeout(TIMEOUT, reactor)
    assert bytes(client.received) == b"abcdef"
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_host_is_asked_once(reactor: Any) -> Generator[Any, Any, None]:
    """
    The local address is the listening one, and the same object every time.
    """
    port, server, client = yield connected_pair(reactor, 0)
    host = server.getHost()
    assert (host.host, host.port) == ("127.0.0.1", port.getHost().port)
    assert server.getHost() is host
    yield hang_up(reactor, port, server, client)


@pytest_twisted.inlineCallbacks
def test_host_is_the_ports_when_bound_to_one_address(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    On a port bound to one address, every connection's local address is the
    port's, without asking the kernel per connection; on a wildcard bind,
    each connection asks for its own.
    """
    port, server, client = yield connected_pair(reactor, 0)
    assert port.local_address == port.getHost()
    assert server.getHost() is port.local_address
    yield hang_up(reactor, port, server, client)
    wildcard = EagerPort(
        0, Factory.forProtocol(Protocol), interface="", reactor=reactor
    )
    wildcard.startListening()
    assert wildcard.local_address is None
    yield wildcard.stopListening()


class CountingSocket:
    """
    Wraps a socket, counting its C{send} calls and noting its C{setsockopt}
    calls.
    """

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped
        self.sends = 0
        self.options: list[tuple[int, int, int]] = []

    def send(self, data: bytes) -> int:
        self.sends += 1
        sent: int = self._wrapped.send(data)
        return sent

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))
        self._wrapped.setsockopt(level, option, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


@pytest_twisted.inlineCallbacks
def test_writes_made_while_reading_go_out_in_one_send(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    A response written in pieces while the connection handles received data
    leaves in one C{send()}, in order, when the handling ends.
    """
    port, server, client = yield connected_pair(reactor, len(b"<ping>\n"))
    counting = CountingSocket(server.socket)
    server.socket = counting  # type: ignore[assignment]
    client.transport.write(b"ping")  # type: ignore[union-attr]
    yield client.complete.addTimeout(TIMEOUT, reactor)
    assert bytes(client.received) == b"<ping>\n"
    assert counting.sends == 1
    yield hang_up(reactor, port, server, client)


@pytest_twisted.inlineCallbacks
def test_close_while_reading_still_sends_what_was_written(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    A close asked for while handling received data comes after what was
    written: the client gets the whole response, then the end.
    """
    port, _, client = yield connected_pair(reactor, len(b"<close>\n"))
    client.transport.write(b"close")  # type: ignore[union-attr]
    yield client.lost.addTimeout(TIMEOUT, reactor)
    assert bytes(client.received) == b"<close>\n"
    yield port.stopListening()


def test_parser_plugin(reactor: Any) -> None:
    """
    C{eagertcp:} descriptions take C{tcp:}'s arguments.
    """
    endpoint = serverFromString(reactor, "eagertcp:8081:backlog=7:interface=127.0.0.2")
    assert isinstance(endpoint, EagerTCPServerEndpoint)
    assert (endpoint._port, endpoint._backlog, endpoint._interface) == (
        8081,
        7,
        "127.0.0.2",
    )


def listening_descriptor(family: int, address: Any) -> int:
    """
    @return: A descriptor of a socket bound to C{address} and listening, as
        systemd passes it.
    """
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind(address)
        listener.listen(5)
        return os.dup(listener.fileno())


@pytest_twisted.inlineCallbacks
def test_adopted_tcp_socket_is_served_eagerly(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    A TCP socket passed by systemd is listened on with L{EagerPort}, whose
    connections are eager; the passed descriptor is closed (the port has
    its own copy), so that nothing listens once the port stops.
    """
    fd = listening_descriptor(socket.AF_INET, ("127.0.0.1", 0))
    adopted = EagerAdoptedEndpoint(
        AdoptedStreamServerEndpoint(reactor, fd, socket.AF_INET)
    )
    port, server, client = yield connected_pair(reactor, 8, adopted)
    assert isinstance(port, EagerPort)
    server.write(b"adopted!")
    yield client.complete.addTimeout(TIMEOUT, reactor)
    assert bytes(client.received) == b"adopted!"
    address = ("127.0.0.1", port.getHost().port)
    yield hang_up(reactor, port, server, client)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=TIMEOUT).close()


@pytest_twisted.inlineCallbacks
def test_adopted_unix_socket_is_left_to_twisted(
    reactor: Any, tmp_path: Path
) -> Generator[Any, Any, None]:
    fd = listening_descriptor(socket.AF_UNIX, str(tmp_path / "s"))
    adopted = EagerAdoptedEndpoint(
        AdoptedStreamServerEndpoint(reactor, fd, socket.AF_UNIX)
    )
    port = yield adopted.listen(Factory.forProtocol(Accepted))
    assert not isinstance(port, EagerPort)
    assert port.getHost().name == str(tmp_path / "s").encode()
    yield port.stopListening()


@pytest.mark.parametrize(
    "description", ["eagersystemd:domain=INET:index=0", "eagersystemd:INET:name=web"]
)
def test_systemd_parser_without_a_passed_socket(reactor: Any, description: str) -> None:
    """
    C{eagersystemd:} takes C{systemd:}'s arguments; without a socket passed
    by systemd it says so.
    """
    with pytest.raises(ValueError, match="systemd passed no such socket"):
        serverFromString(reactor, description)


def test_binding_a_taken_port_fails(reactor: Any) -> None:
    """
    C{bind} (the parent of C{--workers}) fails, as C{listen} does, on a port
    already taken.
    """
    endpoint = EagerTCPServerEndpoint(reactor, 0, interface="127.0.0.1")
    with endpoint.bind() as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            EagerTCPServerEndpoint(reactor, port, interface="127.0.0.1").bind()


class FirstBytes(Protocol):
    """
    The server end for the first-read tests: keeps what it receives and
    how it ended.
    """

    def __init__(self) -> None:
        self.received = b""
        self.reason: Failure | None = None
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.reason = reason
        self.lost.callback(None)


def listening_port(reactor: Any) -> tuple[EagerPort, list[FirstBytes]]:
    """
    An eager port on 127.0.0.1 whose connections are L{FirstBytes}, not
    watched by the reactor: the tests accept by calling its C{doRead}.
    """
    made: list[FirstBytes] = []

    def build() -> FirstBytes:
        made.append(FirstBytes())
        return made[-1]

    port = EagerPort(
        0, Factory.forProtocol(build), interface="127.0.0.1", reactor=reactor
    )
    port.startListening()
    port.stopReading()
    return port, made


def accept(port: EagerPort, made: list[FirstBytes], count: int) -> None:
    """
    Accept until C{count} connections are made (a bounded number of tries).
    """
    for _ in range(100):
        port.doRead()
        if len(made) >= count:
            return
    raise AssertionError(f"{len(made)} accepted, not {count}")


@pytest_twisted.inlineCallbacks
def test_request_sent_with_the_connect_is_read_when_accepted(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    Bytes that arrived before the connection was accepted reach the
    protocol in the same step as the accept, without a turn of the event
    loop; a connection that sent nothing yet is left to the reactor.
    """
    port, made = listening_port(reactor)
    address = ("127.0.0.1", port.getHost().port)
    talker = socket.create_connection(address)
    quiet = socket.create_connection(address)
    talker.sendall(b"GET /sse HTTP/1.1\r\n\r\n")
    accept(port, made, 2)
    assert sorted(p.received for p in made) == [b"", b"GET /sse HTTP/1.1\r\n\r\n"]
    assert all(p.reason is None for p in made)
    talker.close()
    quiet.close()
    for protocol in made:
        yield protocol.lost.addTimeout(TIMEOUT, reactor)
    yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_client_gone_before_the_accept_is_reported_lost(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    A client that connected and closed before being accepted is reported
    lost in the step that accepts it, as the reactor would report it; one
    that sent bytes first has them read, then its end reported by the
    reactor.
    """
    port, made = listening_port(reactor)
    address = ("127.0.0.1", port.getHost().port)
    with socket.create_connection(address) as silent:
        silent.shutdown(socket.SHUT_WR)
        accept(port, made, 1)
    [protocol] = made
    assert protocol.lost.called
    assert protocol.received == b""
    assert protocol.reason is not None
    assert protocol.reason.check(ConnectionDone, ConnectionLost)
    with socket.create_connection(address) as client:
        client.sendall(b"bye")
        client.shutdown(socket.SHUT_WR)
        accept(port, made, 2)
    assert made[1].received == b"bye"
    yield made[1].lost.addTimeout(TIMEOUT, reactor)
    yield port.stopListening()


class TwoKinds(Factory):
    """
    A factory that builds a L{FirstBytes} of its own kind for cleartext
    connections, and records which it was asked for.
    """

    def __init__(self) -> None:
        self.asked: list[str] = []

    def buildProtocol(self, addr: Any) -> FirstBytes:
        self.asked.append("any")
        return FirstBytes()

    def buildCleartextProtocol(self, addr: Any) -> FirstBytes:
        self.asked.append(f"cleartext {addr.host}")
        return FirstBytes()


@pytest_twisted.inlineCallbacks
def test_a_factory_that_can_is_asked_for_its_cleartext_protocol(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    An eager port's connections never start TLS: a factory with a
    C{buildCleartextProtocol} builds them with it, given the peer's
    address, which the connection then reports as its peer.
    """
    factory = TwoKinds()
    port = EagerPort(0, factory, interface="127.0.0.1", reactor=reactor)
    port.startListening()
    try:
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        with client:
            for _ in range(100):
                port.doRead()
                if factory.asked:
                    break
            assert factory.asked == ["cleartext 127.0.0.1"]
            [connection] = [
                c for c in reactor.getReaders() if isinstance(c, EagerServer)
            ]
            assert connection.getPeer().port == client.getsockname()[1]
            connection.loseConnection()
    finally:
        yield port.stopListening()


class ScriptedListener:
    """
    A listening socket whose C{accept} raises the errors of its script, in
    order, and accepts from the real one where the script says C{None}.
    """

    exhausted = None

    def __init__(self, real: Any, *script: int | None) -> None:
        self.real = real
        self.script = list(script)

    def accept(self) -> tuple[socket.socket, Any]:
        code = self.script.pop(0) if self.script else errno.EAGAIN
        if code is None:
            return self.real.accept()  # type: ignore[no-any-return]
        raise OSError(code, os.strerror(code))


@pytest.mark.parametrize(
    ("script", "served", "logged"),
    [
        ((errno.EPERM, None, errno.EPERM), 1, ""),
        ((None, errno.ECONNABORTED, None), 1, "new connection (ECONNABORTED)"),
        ((errno.EBADF, None), 0, "accepting connections"),
    ],
)
def test_accept_errors(
    reactor: Any, script: tuple[int | None, ...], served: int, logged: str
) -> None:
    """
    As with Twisted's own port: a connection the firewall refused
    (C{EPERM}) is skipped and the next one accepted; an aborted one ends
    the turn's accepts with a line in the log; any other error too, with
    its traceback. The port listens on.
    """
    port, made = listening_port(reactor)
    address = ("127.0.0.1", port.getHost().port)
    with socket.create_connection(address), socket.create_connection(address):
        real = port.socket
        port.socket = ScriptedListener(real, *script)
        with capturedLogs() as events:
            port.doRead()
        port.socket = real
        assert len(made) == served
        texts = [formatEvent(e) for e in events]
        assert len(texts) == (1 if logged else 0)
        assert all(logged in text for text in texts)
        failures = [e["log_failure"] for e in events if "log_failure" in e]
        assert [f.type for f in failures] == ([OSError] if served == 0 else [])
        assert port.connected
        for protocol in made:
            protocol.transport.loseConnection()
    port.stopListening()


def test_tcp_nodelay_comes_from_the_listening_socket(reactor: Any) -> None:
    """
    The listening socket has C{TCP_NODELAY}, so accepted connections have it
    from the start (Linux copies it): asking for it costs no system call;
    turning it off and on again still does what it says.
    """
    port, made = listening_port(reactor)
    assert port.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    with socket.create_connection(("127.0.0.1", port.getHost().port)):
        accept(port, made, 1)
        connection = made[0].transport
        assert isinstance(connection, EagerServer)
        real = connection.socket
        counting = CountingSocket(real)
        connection.socket = counting  # type: ignore[assignment]
        nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY)
        connection.setTcpNoDelay(True)
        assert counting.options == []
        assert real.getsockopt(*nodelay)
        connection.setTcpNoDelay(False)
        assert not real.getsockopt(*nodelay)
        connection.setTcpNoDelay(True)
        assert real.getsockopt(*nodelay)
        assert counting.options == [(*nodelay, False), (*nodelay, True)]
        connection.socket = real
        connection.loseConnection()
    port.stopListening()


def test_refusals_do_not_keep_the_port_accepting(reactor: Any) -> None:
    """
    Connections the firewall refuses (C{EPERM}) count against the turn's
    accepts, as with Twisted's port: a turn ends however many there are.
    """
    port, made = listening_port(reactor)
    real = port.socket
    listener = ScriptedListener(real, *[errno.EPERM] * 1000)
    port.socket = listener
    port.doRead()
    port.socket = real
    assert 0 < len(listener.script) < 1000
    assert made == []
    port.stopListening()


@pytest_twisted.inlineCallbacks
def test_ipv6_peer(reactor: Any) -> Generator[Any, Any, None]:
    """
    A connection accepted on an IPv6 socket reports its peer as Twisted's
    port would: an IPv6 address with the client's port.
    """
    made: list[FirstBytes] = []

    def build() -> FirstBytes:
        made.append(FirstBytes())
        return made[-1]

    port = EagerPort(0, Factory.forProtocol(build), interface="::1", reactor=reactor)
    port.startListening()
    port.stopReading()
    with socket.create_connection(("::1", port.getHost().port)) as client:
        accept(port, made, 1)
        peer = made[0].transport.getPeer()
        assert (type(peer).__name__, peer.host, peer.port) == (
            "IPv6Address",
            "::1",
            client.getsockname()[1],
        )
        made[0].transport.loseConnection()
    yield port.stopListening()


class Named(Protocol):
    """
    A protocol with a log prefix of its own.
    """

    def logPrefix(self) -> str:
        return "named"


@pytest.mark.parametrize("client", [("127.0.0.1", 4000), ("::1", 4000, 0, 0)])
@pytest.mark.parametrize("listening", [True, False])
@pytest.mark.parametrize("kind", [Protocol, Named])
def test_connection_made_as_twisted_makes_it(
    client: tuple[Any, ...], listening: bool, kind: type[Protocol]
) -> None:
    """
    An L{EagerServer} starts in the state Twisted's server connection starts
    in (attributes, non-blocking socket, watched for reading), and gives the
    same log prefix and C{repr}, though it writes them only when asked.
    """
    reactor = MemoryReactor()
    port = tcp.Port(0, Factory(), reactor=reactor) if listening else None
    if port is not None:
        port._realPortNumber = 8080
    made: dict[type, tcp.Server] = {}
    ends = []
    for connection in (tcp.Server, EagerServer):
        ours, theirs = socket.socketpair()
        ends += [ours, theirs]
        made[connection] = connection(ours, kind(), client, port, 7, reactor)  # type: ignore[arg-type]
    twisted, eager = made[tcp.Server], made[EagerServer]
    assert "logstr" not in vars(eager) and "repstr" not in vars(eager)
    skipped = {"socket", "fileno", "protocol", "logstr", "repstr"}
    skipped |= {"_named", "_named_kind"}
    assert {k: v for k, v in vars(eager).items() if k not in skipped} == {
        k: v for k, v in vars(twisted).items() if k not in skipped
    }
    assert type(eager.protocol) is type(twisted.protocol)
    assert eager.fileno() == eager.socket.fileno()
    assert eager.socket.gettimeout() == twisted.socket.gettimeout() == 0.0
    assert not os.get_blocking(eager.fileno())
    assert eager in reactor.readers and twisted in reactor.readers
    assert eager.logPrefix() == twisted.logPrefix()
    if listening:
        assert repr(eager) == repr(twisted) == f"<{kind.__name__} #7 on 8080>"
    eager.logstr, eager.repstr = "set,by,hand", "<set by hand>"
    assert (eager.logPrefix(), repr(eager)) == ("set,by,hand", "<set by hand>")
    ours, theirs = socket.socketpair()
    ends.append(theirs)
    lost = EagerServer(ours, kind(), client, port, 7, reactor)  # type: ignore[arg-type]
    lost.connectionLost(Failure(ConnectionDone()))
    assert lost._named is None and not hasattr(lost, "protocol")
    assert lost.logPrefix() == twisted.logPrefix()
    for end in ends:
        end.close()


class LogsWhatItReads(Protocol):
    """
    Logs through Twisted's legacy log, as much of Twisted's own code does.
    """

    def dataReceived(self, data: bytes) -> None:
        legacy_log.msg(f"read {data!r}")


def test_a_connection_read_when_accepted_logs_as_itself(reactor: Any) -> None:
    """
    A connection read as soon as it is accepted is read in its own log
    context, as the reactor reads it later: what is logged meanwhile
    names the connection (protocol, session, peer), not the port; after
    the turn, the log context is the caller's again.
    """
    port = EagerPort(
        0, Factory.forProtocol(LogsWhatItReads), interface="127.0.0.1", reactor=reactor
    )
    port.startListening()
    port.stopReading()
    systems: list[str] = []
    with socket.create_connection(("127.0.0.1", port.getHost().port)) as client:
        client.sendall(b"first")
        with capturedLogs() as events:
            for _ in range(100):
                port.doRead()
                if any("read" in formatEvent(e) for e in events):
                    break
            legacy_log.msg("about the port")
        systems = [e["log_system"] for e in events if "log_system" in e]
    port.stopListening()
    assert systems[0] == f"LogsWhatItReads,{port.sessionno - 1},127.0.0.1"
    assert systems[-1] == "-"
