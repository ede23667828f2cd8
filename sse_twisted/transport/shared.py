"""
One listening socket for the processes of C{--workers N}: the parent binds
it (or takes the one systemd passed), and each worker serves it as the
C{--port} description says, eagerly for TCP, with TLS for C{ssl:}.

A worker finds the socket as a descriptor it inherited; the description
tells it only how to serve it (its address is the parent's business).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Protocol, cast

from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

from sse_twisted.transport.eager import EagerAdoptedEndpoint
from sse_twisted.transport.tls import AdoptedTLSEndpoint, TLSPort

SHARED_KINDS = ("eagertcp", "eagersystemd", "sparingssl")
"""The endpoints whose socket the workers can share: TCP, systemd's, TLS."""

_TLS = "sparingssl"


class SharedSocket(Protocol):
    """
    Where the parent listens for its workers.
    """

    def bind(self) -> socket.socket:
        """
        Bind and listen (or take a socket that listens already), without
        accepting.

        @return: The listening socket, for the workers to inherit.
        @raise OSError: If the address cannot be bound.
        """


def can_share(description: str) -> bool:
    """
    @param description: An endpoint description, as
        L{sse_twisted.tap.endpoint_description} makes it.
    @return: Whether the workers can share its socket.
    """
    return description.partition(":")[0] in SHARED_KINDS


def parent_socket(reactor: Any, description: str) -> SharedSocket:
    """
    @param reactor: The reactor.
    @param description: An endpoint description that L{can_share}.
    @return: What the parent binds for its workers.
    """
    if description.partition(":")[0] == _TLS:
        return TLSPort.parse(description)
    # eagertcp: and eagersystemd: endpoints can bind.
    return cast(SharedSocket, serverFromString(reactor, description))


def worker_endpoint(
    reactor: Any, fileno: int, description: str = ""
) -> IStreamServerEndpoint:
    """
    @param reactor: The reactor.
    @param fileno: The inherited listening socket; closed once served.
    @param description: The parent's C{--port} description: it says whether
        to serve with TLS, and with which key and certificate (read now).
    @return: An endpoint that serves the inherited socket, whatever its
        family, eagerly or (for C{sparingssl:}) with TLS.
    """
    with socket.socket(fileno=os.dup(fileno)) as probe:
        family = probe.family
    if description.partition(":")[0] == _TLS:
        return AdoptedTLSEndpoint(reactor, fileno, family, TLSPort.parse(description))
    return EagerAdoptedEndpoint(AdoptedStreamServerEndpoint(reactor, fileno, family))
