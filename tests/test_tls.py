"""
TLS and HTTP/2 against a real C{twistd ssedemo} process: C{curl --http2},
and raw TLS clients that offer various ALPN protocols.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import pytest
import pytest_twisted
from certificate import Certificate
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived
from h2.settings import SettingCodes
from twistd_process import TwistdServer
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory

from sse_twisted.testing import parse
from sse_twisted.transport.tls import SparingTLSPort

DEADLINE = 10.0
GOTCHA = '{"message": "Gotcha"}'


class CurlStream:
    """
    A C{curl} process reading an event stream; its output (headers
    included) is collected as it comes.
    """

    def __init__(self, url: str, options: Sequence[str] = ("--http2",)) -> None:
        self.output = b""
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            ["curl", "-sS", "-k", "-N", "-D", "-", "--max-time", "30", *options, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read1(65536):
            with self._changed:
                self.output += chunk
                self._changed.notify_all()

    def wait_for(self, text: str) -> None:
        """
        Wait, at most L{DEADLINE} seconds, until C{text} has come.
        """
        with self._changed:
            if not self._changed.wait_for(
                lambda: text.encode() in self.output, DEADLINE
            ):
                raise AssertionError(f"{text!r} never came: {self.output!r}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(DEADLINE)
        self._reader.join(DEADLINE)


@pytest.fixture
def server(certificate: Certificate) -> Iterator[TwistdServer]:
    """
    C{twistd ssedemo} on a plain port and a TLS port, without heartbeat.
    """
    server = TwistdServer(args=["--heartbeat", "0", "--port", certificate.endpoint()])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def curl() -> Iterator[list[CurlStream]]:
    """
    Where a test puts the C{curl} processes to stop after it.
    """
    started: list[CurlStream] = []
    yield started
    for stream in started:
        stream.stop()


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def publish(url: str, data: str) -> dict[str, Any]:
    """
    C{POST /publish} with C{urllib} (HTTP/1.1), over TLS for C{https:}.
    """
    request = urllib.request.Request(
        url + "/publish",
        data=json.dumps({"data": data}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=DEADLINE, context=_insecure()) as r:
        result: dict[str, Any] = json.load(r)
        return result


def test_curl_gets_the_stream_over_http2(
    server: TwistdServer, curl: list[CurlStream]
) -> None:
    """
    C{curl --http2} gets C{/sse} over HTTP/2, and an event that an HTTP/1.1
    client publishes on the same TLS port.
    """
    https = f"https://127.0.0.1:{server.tls_port}"
    stream = CurlStream(https + "/sse")
    curl.append(stream)
    stream.wait_for(GOTCHA)
    assert stream.output.startswith(b"HTTP/2 200")
    assert b"content-type: text/event-stream; charset=utf-8" in stream.output
    assert publish(https, "over TLS")["delivered"] == 1
    stream.wait_for("data: over TLS\n\n")


def test_both_ports_serve_the_same_streams(
    server: TwistdServer, curl: list[CurlStream]
) -> None:
    """
    With two C{--port}s, a stream on one gets what is published on the other.
    """
    https = f"https://127.0.0.1:{server.tls_port}"
    streams = [CurlStream(https + "/sse"), CurlStream(server.url + "/sse")]
    curl.extend(streams)
    for stream in streams:
        stream.wait_for(GOTCHA)
    assert streams[1].output.startswith(b"HTTP/1.1 200")
    assert publish(server.url, "to both")["delivered"] == 2
    for stream in streams:
        stream.wait_for("data: to both\n\n")


def test_stop_ends_http2_streams_with_a_retry(
    server: TwistdServer, curl: list[CurlStream]
) -> None:
    """
    When the server stops, an HTTP/2 stream gets its farewell C{retry:} and
    ends cleanly, as over HTTP/1.1.
    """
    stream = CurlStream(f"https://127.0.0.1:{server.tls_port}/sse")
    curl.append(stream)
    stream.wait_for(GOTCHA)
    server.stop()
    assert stream.process.wait(DEADLINE) == 0
    body = stream.output.partition(b"\r\n\r\n")[2]
    assert body.count(b"retry: ") == 2
    farewell = parse(body).retry
    assert farewell is not None and 3000 <= farewell < 6000


@pytest.mark.parametrize(
    "offered,negotiated",
    [
        (["h2", "http/1.1"], "h2"),
        (["http/1.1"], "http/1.1"),
        ([], None),
    ],
)
def test_alpn_offers_h2_then_http11(
    server: TwistdServer, offered: list[str], negotiated: str | None
) -> None:
    """
    The TLS port picks C{h2} when the client offers it; a client that offers
    only HTTP/1.1, or nothing, is served HTTP/1.1.
    """
    context = _insecure()
    if offered:
        context.set_alpn_protocols(offered)
    with (
        socket.create_connection(("127.0.0.1", server.tls_port), DEADLINE) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == negotiated
        if negotiated == "h2":
            return
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b'"status": "ok"' in answer


def tls_connect(port: int) -> ssl.SSLSocket | None:
    """
    Open a TLS connection; L{None} if the server closes it instead.
    """
    raw = socket.create_connection(("127.0.0.1", port), DEADLINE)
    try:
        return _insecure().wrap_socket(raw, server_hostname="localhost")
    except (ssl.SSLError, ConnectionResetError):
        raw.close()
        return None


def test_full_descriptor_table_on_a_tls_port(certificate: Certificate) -> None:
    """
    A TLS port copes with a full descriptor table as a TCP port does: it
    refuses new clients at once without spinning, logs it at most once a
    second, and accepts again once connections have closed.
    """
    server = TwistdServer(
        args=["--heartbeat", "0", "--port", certificate.endpoint()], open_files=64
    ).start()
    accepted: list[ssl.SSLSocket] = []
    try:
        while (connection := tls_connect(server.tls_port)) is not None:
            assert len(accepted) < 64, "64 connections and still no refusal"
            accepted.append(connection)
        first_refusal = cpu_from = time.monotonic()
        cpu_before = server.cpu_seconds()
        for _ in range(200):
            assert tls_connect(server.tls_port) is None
            if time.monotonic() - cpu_from > 1:
                break
        elapsed = time.monotonic() - cpu_from
        cpu = server.cpu_seconds() - cpu_before
        assert cpu < 0.25 * elapsed, f"{cpu:.2f} s of CPU in {elapsed:.2f} s"
        refusals = re.findall(rb"accept\(\) failed: EMFILE.*", server.output)
        assert 1 <= len(refusals) <= time.monotonic() - first_refusal + 1
        assert b"EMFILE encountered" not in server.output
        for connection in accepted[:3]:
            connection.close()
        deadline = time.monotonic() + DEADLINE
        while (again := tls_connect(server.tls_port)) is None:
            assert time.monotonic() < deadline, "never accepted again"
        accepted.append(again)
    finally:
        for connection in accepted:
            connection.close()
        server.stop()


@pytest_twisted.inlineCallbacks
def test_sparingssl_listens_with_a_sparing_tls_port(
    certificate: Certificate, reactor: Any
) -> Generator[Any, Any, None]:
    """
    C{sparingssl:} takes the arguments of C{ssl:} and listens through a
    L{SparingTLSPort} whose connections speak TLS.
    """
    endpoint = serverFromString(reactor, "sparing" + certificate.endpoint())
    port = yield endpoint.listen(Factory.forProtocol(Protocol))
    try:
        assert isinstance(port, SparingTLSPort)
        assert isinstance(port.factory, TLSMemoryBIOFactory)
        assert port.getHost().host == "127.0.0.1"
    finally:
        yield port.stopListening()


def test_stalled_http2_client_costs_no_cpu(server: TwistdServer) -> None:
    """
    An HTTP/2 client that stops reading (its stream's window full, here
    2000 bytes) costs the server no CPU while it stalls; Twisted alone
    spins a core.
    """
    context = _insecure()
    context.set_alpn_protocols(["h2"])
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2000})
    client.send_headers(
        1,
        [
            (":method", "GET"),
            (":path", "/sse"),
            (":scheme", "https"),
            (":authority", "t"),
        ],
        end_stream=True,
    )
    with (
        socket.create_connection(("127.0.0.1", server.tls_port), DEADLINE) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(client.data_to_send())
        received = b""
        while b"Gotcha" not in received:
            for event in client.receive_data(tls.recv(65536)):
                if isinstance(event, DataReceived):
                    received += event.data
            tls.sendall(client.data_to_send())
        assert publish(server.url, "x" * 5000)["delivered"] == 1
        cpu_before, started = server.cpu_seconds(), time.monotonic()
        time.sleep(1)
        cpu = server.cpu_seconds() - cpu_before
        assert cpu < 0.25 * (time.monotonic() - started), f"{cpu:.2f} s of CPU"


def test_sparingssl_passes_every_argument_to_ssl(certificate: Certificate) -> None:
    """
    Arguments with escaped colons (an IPv6 interface) and named ones reach
    Twisted's C{ssl:} parser intact.
    """
    description = (
        f"sparingssl:port=8443:privateKey={certificate.key}:certKey={certificate.cert}"
        r":interface=\:\:1:backlog=7"
    )
    endpoint = serverFromString(None, description)
    assert (endpoint._port, endpoint._interface, endpoint._backlog) == (8443, "::1", 7)
