"""
Eager TCP: a server endpoint whose connections send at once when nothing is
queued, instead of waiting for the next turn of the event loop.

Twisted's TCP transport queues every write and asks the reactor to watch the
socket for writability; on the next turn it sends and stops watching. For a
server that writes one small event to thousands of connections, that is two
extra C{epoll_ctl} calls and one more dispatch per delivery, about three
quarters of the cost. An eager connection tries C{send()} first and falls back
to Twisted's normal path for whatever the kernel did not take, and whenever
anything is already queued, so bytes are never reordered. And a connection is
read from as soon as it is accepted: its request has usually arrived by then,
and is answered in the same turn of the event loop.

Use it as C{eagertcp:PORT[:backlog=N][:interface=ADDR]}, the same arguments
as C{tcp:}, or as C{eagersystemd:domain=INET:index=N} (or C{name=NAME}), the
same arguments as C{systemd:}, for a socket passed by systemd. TLS (including
HTTP/2) stays on Twisted's normal path.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterable
from ipaddress import ip_address
from typing import Any, Protocol, TypeVar, runtime_checkable

from twisted.internet import address, defer, tcp
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    quoteStringArgument,
    serverFromString,
)
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTCP,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python import context, log
from twisted.python.failure import Failure
from zope.interface import implementer

from sse_twisted.transport.limits import SparingPort, bind_listening

_log = Logger()


class DirectLease(Protocol):
    """
    A connection's descriptor, lent to a writer that sends to it directly
    (C{sse_twisted._fanout.Lease}): it sends only while the lease is neither
    queued nor revoked.
    """

    queued: bool

    def revoke(self) -> None:
        """
        Never send to the descriptor again.
        """


_Lease = TypeVar("_Lease", bound=DirectLease)


class EagerServer(tcp.Server):
    """
    A server-side TCP connection that sends at once when its queue is empty.

    What the protocol writes while it handles received data (a response to
    a request, headers and body written apart) goes out in one C{send()}
    when the handling ends. Its own address is its port's when the port is
    bound to one address (L{EagerPort.local_address}); otherwise it asks
    the kernel once, rather than for every request (twisted.web asks in
    each request's constructor). Its peer's address is the one its port
    made for the factory.

    Its descriptor can be lent (L{lease}) to the compiled fan-out, which
    sends to it directly while nothing is queued, and never once the socket
    is about to close.

    Its log prefix and C{repr} are written when first asked for, from what
    they were made of when it was made, and the prefix without asking zope
    whether the protocol is a logging context when the protocol keeps
    Twisted's own C{logPrefix} (its class's name): Twisted's connection
    formats both, and asks zope, as it is made, a few percent of the cost
    of opening a stream. (An L{EagerPort} asks for the prefix at once, to
    read the connection in its log context.)
    """

    _host: IAddress | None = None
    _peer: IAddress | None = None
    _held: list[bytes] | None = None
    _lease: DirectLease | None = None
    _nodelay: bool | None = None
    _logstr: str | None = None
    _repstr: str | None = None

    def __init__(
        self,
        sock: socket.socket,
        protocol: IProtocol,
        client: tuple[Any, ...],
        server: tcp.Port | None,
        sessionno: int,
        reactor: Any,
    ) -> None:
        # What tcp.Server.__init__ does, through tcp.Connection's and
        # FileDescriptor's, less the formatting of logstr and repstr.
        if not reactor:
            from twisted.internet import reactor
        self.reactor = reactor
        self._tempDataBuffer: list[bytes] = []
        self._tempDataLen = 0
        self.socket = sock
        sock.setblocking(False)
        self.fileno = sock.fileno
        self.protocol = protocol
        if len(client) != 2:
            self._addressType = address.IPv6Address
        self.server = server  # type: ignore[assignment]
        self.client = client
        self.sessionno = sessionno
        self.hostname = client[0]
        self._named: IProtocol | None = protocol
        self._named_kind = type(protocol)
        self.startReading()
        self.connected = 1

    @property
    def logstr(self) -> str:
        """
        The prefix of log lines about this connection, as Twisted's.
        """
        if self._logstr is None:
            self._logstr = self._log_prefix()
        return self._logstr

    @logstr.setter
    def logstr(self, value: str) -> None:
        self._logstr = value

    def _log_prefix(self) -> str:
        named = self._named
        # A protocol's prefix is its class's name unless it says otherwise:
        # that much is known without asking zope.
        if getattr(self._named_kind, "logPrefix", None) is TwistedProtocol.logPrefix:
            prefix = self._named_kind.__name__
        else:
            prefix = self._getLogPrefix(named)
        return f"{prefix},{self.sessionno},{self.hostname}"

    @property
    def repstr(self) -> str:
        """
        This connection's C{repr}, as Twisted's.
        """
        if self._repstr is None:
            port = "None" if self.server is None else self.server._realPortNumber
            name = self._named_kind.__name__
            self._repstr = f"<{name} #{self.sessionno} on {port}>"
        return self._repstr

    @repstr.setter
    def repstr(self, value: str) -> None:
        self._repstr = value

    def connectionLost(self, reason: Failure) -> None:
        # Twisted lets go of the protocol here, and so does this: its log
        # prefix is written now if nothing asked for it yet (the reactor
        # usually has, to report this very loss), so that it stays as it
        # was made of.
        if self._logstr is None:
            self._logstr = self._log_prefix()
        self._named = None
        super().connectionLost(reason)

    def doRead(self) -> Any:
        self._held = []
        self._update_lease()
        try:
            return super().doRead()
        finally:
            held, self._held = self._held, None
            if held:
                self.write(b"".join(held))
            self._update_lease()

    def getHost(self) -> IAddress:
        if self._host is None:
            port = self.server
            shared = port.local_address if isinstance(port, EagerPort) else None
            self._host = super().getHost() if shared is None else shared
        return self._host

    def getPeer(self) -> IAddress:
        if self._peer is None:
            self._peer = super().getPeer()
        return self._peer

    def setTcpNoDelay(self, enabled: bool) -> None:
        # A socket accepted from a listening socket with TCP_NODELAY has it
        # already (L{EagerPort}): no system call to set it again.
        if bool(enabled) != self._nodelay:
            super().setTcpNoDelay(enabled)
            self._nodelay = bool(enabled)

    def write(self, data: bytes) -> None:
        if self._held is not None and not self.TLS:
            self._held.append(data)
            return
        if self._queue_empty():
            try:
                sent = self.socket.send(data)
            except OSError:
                # Would block, or the peer is gone: the normal path retries
                # and reports a lost connection the usual way.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self.queue(data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        self.write(b"".join(iovec))

    def queue(self, data: bytes) -> None:
        """
        Queue C{data} behind whatever is queued, without trying to send it
        first (the caller just did).
        """
        super().write(data)
        self._update_lease()

    def doWrite(self) -> Any:
        result = super().doWrite()
        self._update_lease()
        return result

    def lease(self, make: Callable[[socket.socket], _Lease]) -> _Lease | None:
        """
        Lend this connection's descriptor for direct sends.

        The lease is held back (C{queued}) while anything waits in this
        connection's queue or is held while it handles received data, and
        revoked before the socket closes (or starts TLS).

        @param make: Makes a lease on a socket.
        @return: The connection's one lease; C{None} for a TLS connection
            or one that is closing.
        """
        if self._lease is None:
            if self.TLS or not self.connected or self.disconnecting:
                return None
            self._lease = make(self.socket)
            self._update_lease()
        return self._lease  # type: ignore[return-value]

    def startTLS(self, ctx: Any, normal: bool = True) -> None:
        if self._lease is not None:
            self._lease.revoke()
        super().startTLS(ctx, normal)

    def _closeSocket(self, orderly: bool) -> None:
        # Every path that closes the connection (a close, an abort, a reset,
        # an error, a shutdown) ends here: the descriptor stops being sent
        # to before its number can be given to a new connection.
        if self._lease is not None:
            self._lease.revoke()
        super()._closeSocket(orderly)

    def _update_lease(self) -> None:
        if self._lease is not None:
            self._lease.queued = self._held is not None or not self._queue_empty()

    def _queue_empty(self) -> bool:
        return bool(
            not self.TLS
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not self._tempDataLen
            and self.offset == len(self.dataBuffer)
        )


@runtime_checkable
class CleartextProtocolFactory(Protocol):
    """
    A protocol factory that builds a lighter protocol for connections that
    begin without TLS, so negotiate nothing by ALPN: for a web site, an
    HTTP/1.1 channel without the switch to HTTP/2 that TLS may negotiate.
    """

    def buildCleartextProtocol(self, addr: IAddress) -> IProtocol | None:
        """
        Build the protocol of a connection accepted without TLS, or refuse
        it (C{None}) as C{buildProtocol} would.

        @param addr: The peer's address.
        """


class EagerPort(SparingPort):
    """
    A listening TCP port whose connections are L{EagerServer}s, read from as
    soon as they are accepted, and which copes with a full descriptor table
    (L{SparingPort}). Its connections begin without TLS: a factory that
    is a L{CleartextProtocolFactory} builds them its lighter protocol.
    """

    local_address: IAddress | None = None
    """
    The local address of every connection accepted, when the socket is
    bound to one address; C{None} for a wildcard bind (C{0.0.0.0}, C{::}),
    where each connection's depends on the interface it came in by.
    """

    def doRead(self) -> None:
        """
        Accept the waiting connections, as many in a turn as Twisted's own
        port would, and read from each at once: a client speaks first, and
        its request has usually arrived by then, so it is handled in this
        turn of the event loop, without waiting for the reactor to report
        it readable (a connection whose request has not arrived yet is
        read when it has, as usual).
        """
        # The reactor reads a connection in a log context of its own, whose
        # "system" is the connection's log prefix; so is each connection
        # read here, in one context for the turn (pushing one per
        # connection costs a tenth of opening a stream).
        log.callWithContext({"system": self.logPrefix()}, self._accept_waiting)

    def _accept_waiting(self) -> None:
        logged = context.get(log.ILogContext)
        accepted = 0
        try:
            # At most numberAccepts tries, refused ones included, as Twisted.
            for _ in range(self.numberAccepts):
                try:
                    client, address = self.socket.accept()
                except OSError as e:
                    if e.errno == errno.EPERM:
                        # Netfilter refused it; others may wait.
                        continue
                    if e.errno in _NONE_WAITING:
                        break
                    if e.errno in _ACCEPT_ERRORS:
                        _log.info(
                            "Could not accept new connection ({error})",
                            error=errno.errorcode[e.errno],
                        )
                        break
                    raise
                accepted += 1
                self._serve(client, address, logged)
        except BaseException:
            _log.failure("accepting connections")
        # Twisted's scaling: more next time if all were taken.
        if accepted == self.numberAccepts:
            self.numberAccepts += 20
        else:
            self.numberAccepts = max(1, accepted)
        self.pause_if_exhausted()

    def _serve(
        self, client: socket.socket, address: tuple[Any, ...], logged: dict[str, Any]
    ) -> None:
        """
        Make the protocol and transport of a connection just accepted, and
        read from it.

        @param logged: The log context of this turn; its C{system} is the
            connection's log prefix while the connection is read.
        """
        if len(address) == 4:
            # IPv6: the scope, if any, into the host, as Twisted does.
            host, _ = socket.getnameinfo(
                address, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
            )
            address = (host, *address[1:])
        peer = self._buildAddr(address)
        protocol = self._build(peer)
        if protocol is None:
            client.close()
            return
        session = self.sessionno
        self.sessionno = session + 1
        connection = EagerServer(client, protocol, address, self, session, self.reactor)
        connection._peer = peer
        connection._nodelay = self._nodelay_inherited(client)
        protocol.makeConnection(connection)
        if not connection.connected or connection.disconnecting:
            return
        port_system, logged["system"] = logged["system"], connection.logstr
        try:
            try:
                why = connection.doRead()
            except BaseException as e:
                _log.failure("reading a new connection")
                why = e
            if why:
                self.reactor._disconnectSelectable(connection, why, True)  # type: ignore[attr-defined]
        finally:
            logged["system"] = port_system

    _inherits_nodelay: bool | None = None

    def _nodelay_inherited(self, client: socket.socket) -> bool | None:
        """
        @return: Whether C{client}, just accepted, has C{TCP_NODELAY} from
            the listening socket (Linux gives it); asked of the first
            connection only. C{None} if unknown.
        """
        if self._inherits_nodelay is None:
            try:
                self._inherits_nodelay = bool(
                    client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                )
            except OSError:
                return None
        return self._inherits_nodelay or None

    def startListening(self) -> None:
        super().startListening()
        host = self.getHost()
        self.local_address = None if _is_wildcard(host) else host
        try:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self._inherits_nodelay = False
        factory: Any = self.factory
        self._build: Callable[[IAddress], IProtocol | None] = (
            factory.buildCleartextProtocol
            if isinstance(factory, CleartextProtocolFactory)
            else factory.buildProtocol
        )


_NONE_WAITING = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})
_ACCEPT_ERRORS = frozenset(
    {errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
)
"""Errors after which Twisted's port, too, stops accepting for this turn."""


def _is_wildcard(address: IAddress) -> bool:
    host = getattr(address, "host", "")
    try:
        return ip_address(host).is_unspecified
    except ValueError:
        return True


@implementer(IStreamServerEndpoint)
class EagerTCPServerEndpoint:
    """
    Listens on TCP (IPv4) with L{EagerPort}.
    """

    def __init__(
        self, reactor: IReactorTCP, port: int, backlog: int = 50, interface: str = ""
    ) -> None:
        """
        @param reactor: A reactor built on Twisted's own TCP support (the
            epoll, poll, select or asyncio reactors).
        @param port: The port number; 0 lets the kernel pick.
        @param backlog: The size of the listen queue.
        @param interface: The address to listen on; all by default.
        """
        self._reactor = reactor
        self._port = port
        self._backlog = backlog
        self._interface = interface

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        return defer.execute(self._listen, factory)

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        port = EagerPort(
            self._port, factory, self._backlog, self._interface, self._reactor
        )
        port.startListening()
        return port

    def bind(self) -> socket.socket:
        """
        Bind and listen without accepting: the socket is for other processes
        to serve (the workers of C{--workers}, through L{EagerPort.adopt}).

        @return: See L{bind_listening}.
        @raise OSError: If the address cannot be bound.
        """
        return bind_listening(self._interface, self._port, self._backlog)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class EagerTCPParser:
    """
    Parses C{eagertcp:} server endpoint descriptions.
    """

    prefix = "eagertcp"

    def parseStreamServer(  # type: ignore[override]
        self,
        reactor: IReactorTCP,
        port: str,
        backlog: str = "50",
        interface: str = "",
    ) -> EagerTCPServerEndpoint:
        """
        @param reactor: The reactor.
        @param port: The port number.
        @param backlog: The size of the listen queue.
        @param interface: The address to listen on.
        @return: The endpoint.
        """
        return EagerTCPServerEndpoint(reactor, int(port), int(backlog), interface)


@implementer(IStreamServerEndpoint)
class EagerAdoptedEndpoint:
    """
    Listens on a TCP socket passed by systemd with L{EagerPort}; sockets of
    other families are left to Twisted's own adoption.
    """

    def __init__(self, adopted: AdoptedStreamServerEndpoint) -> None:
        """
        @param adopted: Twisted's endpoint for the same socket.
        """
        self._adopted = adopted

    def bind(self) -> socket.socket:
        """
        Take the socket without accepting on it: it is for other processes
        to serve (the workers of C{--workers}), as a bound one is.

        @return: The socket, which owns the descriptor from now on.
        """
        adopted = self._adopted
        return socket.socket(
            adopted.addressFamily, socket.SOCK_STREAM, 0, adopted.fileno
        )

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        if self._adopted.addressFamily not in (socket.AF_INET, socket.AF_INET6):
            return self._adopted.listen(factory)
        return defer.execute(self._listen, factory)

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        adopted = self._adopted
        port = EagerPort.adopt(
            adopted.reactor, adopted.fileno, adopted.addressFamily, factory
        )
        os.close(adopted.fileno)
        return port


@implementer(IPlugin, IStreamServerEndpointStringParser)
class EagerSystemdParser:
    """
    Parses C{eagersystemd:} server endpoint descriptions: the arguments of
    Twisted's C{systemd:} (C{domain}, and C{index} or C{name}).
    """

    prefix = "eagersystemd"

    def parseStreamServer(  # type: ignore[override]
        self,
        reactor: Any,
        domain: str,
        index: str | None = None,
        name: str | None = None,
    ) -> EagerAdoptedEndpoint:
        """
        @param reactor: The reactor.
        @param domain: The socket's family without C{AF_}: C{INET}, C{INET6}.
        @param index: The socket's place among those passed.
        @param name: The socket's name (C{FileDescriptorName=}).
        @return: The endpoint.
        @raise ValueError: If systemd passed no such socket.
        """
        arguments = {"domain": domain, "index": index, "name": name}
        description = "systemd:" + ":".join(
            f"{key}={quoteStringArgument(value)}"
            for key, value in arguments.items()
            if value is not None
        )
        try:
            adopted = serverFromString(reactor, description)
        except (IndexError, KeyError):
            raise ValueError(
                "systemd passed no such socket (a .socket unit, or"
                " systemd-socket-activate with --fdname, sets LISTEN_FDS and"
                " LISTEN_FDNAMES)"
            ) from None
        return EagerAdoptedEndpoint(adopted)
