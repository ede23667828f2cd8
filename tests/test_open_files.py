"""
A real C{twistd ssedemo} whose descriptor table fills up: it is started with
an open-files limit of 64 (soft and hard) and given streams until it refuses
one.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import pytest
from twistd_process import DEADLINE, TwistdServer

LIMIT = 64
WINDOW = 1.0
"""Seconds during which clients are refused and the server's CPU time is measured."""


def open_stream(port: int) -> socket.socket | None:
    """
    Open C{/sse}; return the socket once the greeting arrives, or L{None}
    if the server closes the connection instead.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
    received = b""
    try:
        while b"Gotcha" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                sock.close()
                return None
            received += chunk
    except ConnectionResetError:
        sock.close()
        return None
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {marker!r}: {received[-200:]!r}"
        received += chunk
    return received


@pytest.fixture
def server() -> Iterator[TwistdServer]:
    server = TwistdServer(
        args=["--heartbeat", "0", "--keepalive", "0"], open_files=LIMIT
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_full_descriptor_table(server: TwistdServer) -> None:
    """
    With its descriptor table full of streams, the server refuses new
    clients at once without spinning, still takes a publish on an open
    connection (its first POST since it started) and delivers it to every
    stream, logs about the refusals at most once a second, and accepts new
    streams once some have closed.
    """
    assert f"open files limit: {LIMIT}".encode() in server.output
    publisher = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    streams = []
    for _ in range(LIMIT):
        stream = open_stream(server.port)
        if stream is None:
            break
        streams.append(stream)
    else:
        raise AssertionError(f"{LIMIT} streams and still no refusal")
    first_refusal = time.monotonic()
    assert len(streams) > LIMIT // 2

    cpu_before, started = server.cpu_seconds(), time.monotonic()
    for _ in range(1000):
        assert open_stream(server.port) is None
        if time.monotonic() - started > WINDOW:
            break
    elapsed = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu_before
    assert cpu < 0.25 * elapsed, f"{cpu:.2f} s of CPU in {elapsed:.2f} s"

    body = json.dumps({"data": "while full"}).encode()
    publisher.sendall(
        b"POST /publish HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    response = read_until(publisher, b"\r\n0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 "), response
    assert b'"delivered": %d,' % len(streams) in response
    for stream in streams:
        read_until(stream, b"data: while full\n\n")

    refusal_lines = re.findall(rb"accept\(\) failed: EMFILE.*", server.output)
    seconds = time.monotonic() - first_refusal
    assert 1 <= len(refusal_lines) <= seconds + 1
    assert b"EMFILE encountered" not in server.output

    for stream in streams[:3]:
        stream.close()
    reopened = None
    deadline = time.monotonic() + DEADLINE
    while reopened is None and time.monotonic() < deadline:
        reopened = open_stream(server.port)
    assert reopened is not None
    for stream in [*streams[3:], reopened, publisher]:
        stream.close()
