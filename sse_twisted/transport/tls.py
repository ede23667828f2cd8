"""
TLS ports that cope with a full descriptor table, as ssedemo's TCP ports
do (L{sse_twisted.transport.limits.SparingPort}).

Use it as C{sparingssl:PORT:privateKey=...[:certKey=...]...}, the arguments
of Twisted's C{ssl:}: Twisted parses them and builds its own TLS endpoint,
which then listens through L{SparingPort} rather than Twisted's TCP port.
Connections are Twisted's own TLS connections, HTTP/2 by ALPN included,
except that a closed one lets go of what it holds (L{_TLSConnection}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.interfaces import (
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

from sse_twisted.transport.limits import SparingPort


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
