"""
A TCP proxy for the browser tests: it sits between the browser and the
server, so that a test can drop the browser's connections while the server
keeps running, and hold the browser's reconnections back for a while.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import suppress

DEADLINE = 10.0
_POLL = 0.05
_CHUNK = 64 * 1024


class _Link:
    """
    One proxied connection: a client socket and its upstream socket, pumped
    by one thread, which alone closes them.
    """

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.thread = threading.Thread(target=self._pump, daemon=True)

    def _pump(self) -> None:
        peers = {self.client: self.upstream, self.upstream: self.client}
        try:
            while True:
                readable, _, _ = select.select(list(peers), [], [])
                for source in readable:
                    chunk = source.recv(_CHUNK)
                    if not chunk:
                        return
                    peers[source].sendall(chunk)
        except OSError:
            return
        finally:
            for sock in peers:
                sock.close()

    def cut(self) -> None:
        """
        End both connections now; the pumping thread then closes the sockets.
        """
        for sock in (self.client, self.upstream):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Proxy:
    """
    Forwards every connection made to C{127.0.0.1:port} to the target.

    @ivar port: The port it listens on, picked by the kernel.
    @ivar connections: How many connections it has accepted.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._held: list[socket.socket] = []
        self._holding = False
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        self._acceptor.start()
        return self

    def _accept(self) -> None:
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._listener], [], [], _POLL)
            if not readable:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            with self._lock:
                self.connections += 1
                if self._holding:
                    self._held.append(client)
                else:
                    self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target, timeout=DEADLINE)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        link = _Link(client, upstream)
        self._links.append(link)
        link.thread.start()

    def cut(self, hold: bool = False) -> None:
        """
        Drop every current connection, at both ends.

        @param hold: Whether to hold new connections back, accepted but not
            forwarded, until L{release}.
        """
        with self._lock:
            self._holding = hold
            links, self._links = self._links, []
        for link in links:
            link.cut()
        _join(link.thread for link in links)

    def hold(self) -> None:
        """
        Hold new connections back, accepted but not forwarded, until
        L{release}; the current ones go on.
        """
        with self._lock:
            self._holding = True

    def release(self) -> None:
        """
        Forward the connections held back since L{cut}, and the new ones.
        """
        with self._lock:
            self._holding = False
            held, self._held = self._held, []
            for client in held:
                self._forward(client)

    def retarget(self, target_port: int) -> None:
        """
        Forward the connections from now on (and those held) to another
        port of 127.0.0.1, as a load balancer switching instances does.
        """
        with self._lock:
            self._target = (self._target[0], target_port)

    def held(self) -> int:
        """
        @return: How many connections are waiting to be forwarded.
        """
        with self._lock:
            return len(self._held)

    def stop(self) -> None:
        """
        Stop listening and drop every connection.
        """
        self._stopping.set()
        if self._acceptor.is_alive():
            self._acceptor.join(DEADLINE)
        self._listener.close()
        self.cut()
        with self._lock:
            held, self._held = self._held, []
        for client in held:
            client.close()


def _join(threads: Iterator[threading.Thread]) -> None:
    for thread in threads:
        thread.join(DEADLINE)
