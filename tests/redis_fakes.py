"""
Redis servers in memory for the tests of connections and failover logic:
each connection made through L{FakeServers} reaches a L{FakeServer} that
answers commands from its own small state (its role, its password, the
master a sentinel names), on the test's L{Clock}.
"""

from __future__ import annotations

from collections.abc import Callable

import hiredis
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

Answer = Callable[[list[bytes]], bytes]


def bulk(value: bytes | None) -> bytes:
    return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)


def array(*values: bytes | None) -> bytes:
    return b"*%d\r\n" % len(values) + b"".join(bulk(v) for v in values)


class ServerTransport(StringTransport):
    """
    The client's end of a connection to a L{FakeServer}: what the client
    writes is answered at once; closing it tells the client a moment later.
    """

    def __init__(self, server: FakeServer, protocol: IProtocol, clock: Clock) -> None:
        super().__init__()
        self.server = server
        self.protocol = protocol
        self._clock = clock
        self._reader = hiredis.Reader()
        self.closed = False

    def write(self, data: bytes) -> None:
        self._reader.feed(data)
        while (command := self._reader.gets()) is not False:
            self.server.commands.append(command)
            reply = self.server.answer(command, self)
            if reply:
                self.protocol.dataReceived(reply)

    def push(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def loseConnection(self) -> None:
        if not self.closed:
            self.closed = True
            self.server.connections.remove(self)
            self._clock.callLater(0, self.protocol.connectionLost, Failure(EOFError()))

    abortConnection = loseConnection


class FakeServer:
    """
    A Redis server or sentinel: C{AUTH} with C{password}, C{SELECT},
    C{ROLE} (C{role}), C{SENTINEL get-master-addr-by-name} (C{names}),
    C{SUBSCRIBE}, C{PING}; anything in C{answers} by command name.
    """

    def __init__(self, role: bytes = b"master") -> None:
        self.role = role
        self.password: bytes | None = None
        self.names: dict[bytes, tuple[bytes, bytes]] = {}
        self.answers: dict[bytes, Answer] = {}
        self.commands: list[list[bytes]] = []
        self.connections: list[ServerTransport] = []
        self.up = True

    def answer(self, command: list[bytes], transport: ServerTransport) -> bytes:
        name = command[0].upper()
        if name in self.answers:
            return self.answers[name](command)
        if name == b"AUTH":
            if command[-1] == self.password:
                return b"+OK\r\n"
            return b"-WRONGPASS invalid username-password pair\r\n"
        if name in (b"SELECT", b"PING"):
            return b"+OK\r\n" if name == b"SELECT" else b"+PONG\r\n"
        if name == b"ROLE":
            return b"*1\r\n" + bulk(self.role)
        if name == b"SENTINEL":
            address = self.names.get(command[2])
            return array(*address) if address else b"*-1\r\n"
        if name == b"SUBSCRIBE":
            return b"*3\r\n" + bulk(b"subscribe") + bulk(command[1]) + b":1\r\n"
        return b"-ERR unknown command\r\n"

    def drop(self) -> None:
        """
        Close every connection (as a server that dies).
        """
        for transport in list(self.connections):
            transport.loseConnection()


class FakeServers:
    """
    Servers by C{(host, port)}, and endpoints that connect to them.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.servers: dict[tuple[str, int], FakeServer] = {}
        self.attempts: list[tuple[str, int]] = []

    def add(self, host: str, port: int, server: FakeServer) -> FakeServer:
        self.servers[host, port] = server
        return server

    def endpoint(self, host: str, port: int) -> FakeEndpoint:
        return FakeEndpoint(self, host, port)


class FakeEndpoint:
    """
    Connects to the L{FakeServer} at its address, or is refused.
    """

    def __init__(self, servers: FakeServers, host: str, port: int) -> None:
        self._servers = servers
        self.host, self.port = host, port

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        self._servers.attempts.append((self.host, self.port))
        server = self._servers.servers.get((self.host, self.port))
        if server is None or not server.up:
            return fail(ConnectionRefusedError(f"{self.host}:{self.port}"))
        protocol = factory.buildProtocol(None)
        assert protocol is not None
        transport = ServerTransport(server, protocol, self._servers.clock)
        server.connections.append(transport)
        protocol.makeConnection(transport)
        return succeed(protocol)
