"""
A deliberately awkward event-stream server, written on raw sockets with
Twisted, for testing clients: each path is a scene, written byte by byte
if asked, and every request is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater


@dataclass
class Seen:
    """
    One request the server received.
    """

    path: str
    headers: dict[str, str]


def head(
    status: str, content_type: str | None = "text/event-stream", **more: str
) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Connection: close"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in more.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


Scene = Callable[["_Connection", Seen], Any]


class _Connection(Protocol):
    def __init__(self, server: AwkwardServer) -> None:
        self.server = server
        self.received = b""
        self.answered = False

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self.server.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.answered or b"\r\n\r\n" not in self.received:
            return
        self.answered = True
        request, *lines = self.received.split(b"\r\n\r\n")[0].decode().split("\r\n")
        path = request.split(" ")[1]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        seen = Seen(path, headers)
        self.server.seen.append(seen)
        scene = self.server.scenes[path.partition("?")[0]]
        scene(self, seen)

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def end(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def trickle(self, data: bytes, then_end: bool = True) -> None:
        """
        Write C{data} one byte per write, each in its own turn of the
        reactor (and, without Nagle, its own TCP segment).
        """
        reactor = self.server.reactor

        async def run() -> None:
            for i in range(len(data)):
                if not self.transport.connected:  # type: ignore[union-attr]
                    return
                self.write(data[i : i + 1])
                await deferLater(reactor, 0, lambda: None)
            if then_end:
                self.end()

        ensureDeferred(run())


@dataclass
class AwkwardServer:
    """
    Listens on an ephemeral port of 127.0.0.1; C{scenes} maps paths to what
    is done with a request for them.
    """

    reactor: Any
    scenes: dict[str, Scene] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    connections: list[_Connection] = field(default_factory=list)
    port: IListeningPort | None = None

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port.getHost().port}"

    async def start(self) -> AwkwardServer:
        endpoint = TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1")
        self.port = await endpoint.listen(
            Factory.forProtocol(lambda: _Connection(self))
        )
        return self

    async def stop(self) -> None:
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.abortConnection()  # type: ignore[attr-defined]
        if self.port is not None and self.port.connected:  # type: ignore[attr-defined]
            await self.port.stopListening()
