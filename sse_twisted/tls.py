"""
TLS ports that cope with a full descriptor table, as ssedemo's TCP ports
do (L{sse_twisted.limits.SparingPort}).

Use it as C{sparingssl:PORT:privateKey=...[:certKey=...]...}, the arguments
of Twisted's C{ssl:}: Twisted parses them and builds its own TLS endpoint,
which then listens through L{SparingPort} rather than Twisted's TCP port.
Connections are Twisted's own TLS connections, HTTP/2 by ALPN included.
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
from twisted.plugin import IPlugin
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from sse_twisted.limits import SparingPort


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
            TLSMemoryBIOFactory(contextFactory, False, factory),
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
