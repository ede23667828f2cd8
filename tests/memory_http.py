"""
Drive a web resource through Twisted's real HTTP server code over in-memory
transports: exact bytes, no sockets, no reactor.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.server import Site


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Connection:
    """
    One client connection to the site.
    """

    def __init__(self, site: Site, peer: str = "127.0.0.1") -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        channel = site.buildProtocol(self.transport.getPeer())
        assert channel is not None
        self.channel = channel
        self.channel.makeConnection(self.transport)

    def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        version: str = "HTTP/1.1",
    ) -> None:
        lines = [f"{method} {path} {version}", "Host: test"]
        all_headers = dict(headers or {})
        if body or method in ("POST", "PUT"):
            all_headers.setdefault("Content-Length", str(len(body)))
        lines += [f"{name}: {value}" for name, value in all_headers.items()]
        self.channel.dataReceived(
            ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        )

    def response(self) -> Response:
        return parse_response(self.transport.value())

    def disconnect(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


class Client:
    """
    Makes requests against a resource, each on its own connection.
    """

    def __init__(self, site: Site, peer: str = "127.0.0.1") -> None:
        self.site = site
        self.peer = peer

    def open(self, method: str, path: str, **kwargs: object) -> Connection:
        connection = Connection(self.site, self.peer)
        connection.send(method, path, **kwargs)  # type: ignore[arg-type]
        return connection

    def request(self, method: str, path: str, **kwargs: object) -> Response:
        return self.open(method, path, **kwargs).response()


def parse_response(raw: bytes) -> Response:
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body, complete = dechunk(rest)
    else:
        length = headers.get("content-length")
        complete = length is None or len(rest) >= int(length)
        body = rest
    return Response(int(status_line.split()[1]), headers, body, complete)


def dechunk(raw: bytes) -> tuple[bytes, bool]:
    """
    @return: The body so far and whether the final chunk has arrived.
    """
    body = b""
    while raw:
        size_line, sep, raw = raw.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            return body, True
        body += raw[:size]
        raw = raw[size + 2 :]
    return body, False
