"""
TLS ports that cope with a full descriptor table, as ssedemo's TCP ports
do (L{sse_twisted.transport.limits.SparingPort}).

Use it as C{sparingssl:PORT:privateKey=...[:certKey=...]...}, the arguments
of Twisted's C{ssl:}: Twisted parses them and builds its own TLS endpoint,
which then listens through L{SparingPort} rather than Twisted's TCP port.
Connections are Twisted's own TLS connections, HTTP/2 by ALPN included,
except that a closed one lets go of what it holds (L{_TLSConnection}).

With C{--workers}, L{TLSPort} reads the same description: the parent binds
the TCP socket it names, and each worker serves that socket with TLS.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.internet.protocol import connectionDone
from twisted.plugin import IPlugin
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from sse_twisted.transport.limits import SparingPort, bind_listening


class _TLSConnection(BufferingTLSTransport):
    """
    Twisted's TLS connection, without the two reference cycles it leaves
    when it closes, so that reference counting frees a closed connection,
    its HTTP channel, requests and streams at once, rather than the next
    full garbage collection (which the server makes rare):

      - a TLS error (such as a client that closes its socket without
        C{close_notify}) comes as a L{Failure} whose traceback holds the
        frame that made it, which holds the connection and the L{Failure};
      - the connection keeps its producer (the HTTP channel, whose
        transport it is) after it is closed, where Twisted's TCP connections
        let go of theirs.
    """

    def _tlsShutdownFinished(self, reason: Failure | None) -> None:
        if reason is not None:
            reason.cleanFailure()  # keeps its type, value and text
        super()._tlsShutdownFinished(reason)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self._producer = None


class _TLSFactory(TLSMemoryBIOFactory):
    protocol = _TLSConnection


class SparingTLSPort(SparingPort):
    """
    A L{SparingPort} whose connections speak TLS.
    """

    _type = "TLS"  # Twisted's name for such a port in its log lines


class _SparingTLSListener:
    """
    What Twisted's TLS endpoint listens with: C{listenSSL}, on a
    L{SparingTLSPort} of the reactor.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def listenSSL(
        self,
        port: int,
        factory: IProtocolFactory,
        contextFactory: IOpenSSLServerConnectionCreator,  # noqa: N803 (its name in IReactorSSL)
        backlog: int = 50,
        interface: str = "",
    ) -> SparingTLSPort:
        listening = SparingTLSPort(
            port,
            _TLSFactory(contextFactory, False, factory),
            backlog,
            interface,
            self._reactor,
        )
        listening.startListening()
        return listening


@implementer(IPlugin, IStreamServerEndpointStringParser)
class SparingSSLParser:
    """
    Parses C{sparingssl:} server endpoint descriptions: those of C{ssl:}.
    """

    prefix = "sparingssl"

    def parseStreamServer(  # type: ignore[override]
        self, reactor: Any, *args: str, **kwargs: str
    ) -> IStreamServerEndpoint:
        """
        @param reactor: The reactor.
        @param args: The positional arguments of C{ssl:} (the port).
        @param kwargs: Its named ones (C{privateKey}, C{certKey}, ...).
        @return: The endpoint.
        """
        arguments = [quoteStringArgument(value) for value in args] + [
            f"{name}={quoteStringArgument(value)}" for name, value in kwargs.items()
        ]
        return serverFromString(
            _SparingTLSListener(reactor), ":".join(["ssl", *arguments])
        )


@dataclass(frozen=True)
class TLSPort:
    """
    What a C{sparingssl:} (or C{ssl:}) description says: the TCP address
    to listen on, and the TLS (key, certificate, protocols) of each
    connection.
    """

    port: int
    context: IOpenSSLServerConnectionCreator
    backlog: int
    interface: str

    @classmethod
    def parse(cls, description: str) -> TLSPort:
        """
        Read a description as Twisted's C{ssl:} endpoint does, the key and
        certificate files included.

        @param description: C{sparingssl:...} or C{ssl:...}.
        @return: What it says.
        @raise ValueError: If it cannot be parsed, or its files not read.
        """
        arguments = description.partition(":")[2]
        read: list[TLSPort] = []
        recorder = _Recorder()
        serverFromString(recorder, f"ssl:{arguments}").listen(None).addCallback(
            read.append
        )
        return read[0]

    def bind(self) -> socket.socket:
        """
        Bind and listen without accepting, for worker processes to serve
        (through L{AdoptedTLSEndpoint}).

        @return: See L{bind_listening}.
        @raise OSError: If the address cannot be bound.
        """
        return bind_listening(self.interface, self.port, self.backlog)


class _Recorder:
    """
    Takes the place of the reactor when Twisted's C{ssl:} endpoint
    listens: it keeps what the endpoint asks for instead of listening.
    """

    def listenSSL(
        self,
        port: int,
        factory: IProtocolFactory,
        contextFactory: IOpenSSLServerConnectionCreator,  # noqa: N803 (its name in IReactorSSL)
        backlog: int = 50,
        interface: str = "",
    ) -> TLSPort:
        return TLSPort(port, contextFactory, backlog, interface)


@implementer(IStreamServerEndpoint)
class AdoptedTLSEndpoint:
    """
    Serves a listening socket that another process bound (the parent of
    C{--workers}) with TLS, on a L{SparingTLSPort}.
    """

    def __init__(self, reactor: Any, fileno: int, family: int, tls: TLSPort) -> None:
        """
        @param reactor: The reactor.
        @param fileno: The listening socket's descriptor; closed once the
            port has its own copy.
        @param family: C{AF_INET} or C{AF_INET6}.
        @param tls: The TLS of each connection.
        """
        self._reactor = reactor
        self._fileno = fileno
        self._family = family
        self._tls = tls

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        return defer.execute(self._listen, factory)

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        port = SparingTLSPort.adopt(
            self._reactor,
            self._fileno,
            self._family,
            _TLSFactory(self._tls.context, False, factory),
        )
        os.close(self._fileno)
        return port
