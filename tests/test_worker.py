"""
Tests for L{sse_twisted.workers.child}: what a worker process does on its own (the
whole process is run in C{test_workers_process.py}).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest_twisted
from certificate import Certificate
from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.protocol import Factory

from sse_twisted.tap import endpoint_description
from sse_twisted.transport.eager import EagerPort, EagerTCPServerEndpoint
from sse_twisted.transport.tls import SparingTLSPort, TLSPort
from sse_twisted.workers.child import ParentWatch, inherited_endpoint, stop_reactor

TIMEOUT = 20


@pytest_twisted.inlineCallbacks
def test_parent_watch_reports_the_end_of_the_pipe(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    Bytes on the pipe are ignored; its end (the parent closed it, or died)
    is reported once.
    """
    read, write = os.pipe()
    gone: Deferred[None] = Deferred()
    watch = ParentWatch(read, lambda: gone.callback(None))
    try:
        os.write(write, b"ignored")
        assert watch.doRead() is None
        assert watch.doRead() is None  # nothing more to read: no end yet
        reactor.addReader(watch)
        os.close(write)
        yield gone.addTimeout(TIMEOUT, reactor)
    finally:
        os.close(read)


class StoppedReactor:
    def stop(self) -> None:
        raise ReactorNotRunning()


def test_stop_reactor_twice_is_harmless() -> None:
    """
    The parent's end may come while the worker is already stopping.
    """
    stop_reactor(StoppedReactor())


@pytest_twisted.inlineCallbacks
def test_inherited_endpoint_serves_either_family(
    reactor: Any,
) -> Generator[Any, Any, None]:
    """
    The inherited socket's family (IPv4 or IPv6) is found from the socket.
    """
    for interface in ("127.0.0.1", "::1"):
        with EagerTCPServerEndpoint(reactor, 0, interface=interface).bind() as bound:
            endpoint = inherited_endpoint(reactor, os.dup(bound.fileno()))
            port = yield endpoint.listen(Factory())
            assert isinstance(port, EagerPort)
            assert port.getHost().host == interface
            yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_inherited_endpoint_serves_tls_for_an_ssl_port(
    reactor: Any, certificate: Certificate
) -> Generator[Any, Any, None]:
    """
    For an C{ssl:} port, the inherited socket is served with TLS, with the
    key and certificate the description names.
    """
    description = endpoint_description(certificate.endpoint(0))
    with TLSPort.parse(description).bind() as bound:
        endpoint = inherited_endpoint(reactor, os.dup(bound.fileno()), description)
        port = yield endpoint.listen(Factory())
        assert isinstance(port, SparingTLSPort)
        assert port.getHost().host == "127.0.0.1"
        yield port.stopListening()
