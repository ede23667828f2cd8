"""
Connection churn over TLS: does memory hold steady while clients come and go
over HTTPS, with HTTP/1.1 or HTTP/2?

Starts C{twistd -n ssedemo} with a plain port (for C{/health}) and a TLS
port, with a throwaway certificate made by C{openssl}. Then, W times, opens
N streams over TLS (the protocol chosen by ALPN), waits for every greeting,
and closes them all abruptly (no TLS C{close_notify}, as a client that goes
away does); once C{/health} shows no open stream, it reads the server's RSS.
The clients are Python's C{asyncio} (and C{h2} for HTTP/2), so the connection
rate is the clients' as much as the server's: compare runs of one machine.

    .venv/bin/python bench/tls_churn.py --protocol h2 --clients 1000 --waves 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection

TWISTD = str(Path(sys.executable).with_name("twistd"))
IN_FLIGHT = 200  # TLS handshakes at once
DEADLINE = 60.0  # seconds for a wave to open, or to be seen closed
_LISTENING = re.compile(rb"Site (\(TLS\) )?starting on (\d+)")


def certificate(directory: Path) -> tuple[Path, Path]:
    """
    @return: A new self-signed key and certificate for C{localhost}.
    """
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return key, cert


def start(directory: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """
    Start ssedemo on a plain and a TLS port of 127.0.0.1.

    @return: The process, its plain port and its TLS port.
    """
    key, cert = certificate(directory)
    tls = f"ssl:0:privateKey={key}:certKey={cert}:interface=127.0.0.1"
    process = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "ssedemo", "--heartbeat", "0",
         "--port", "tcp:0:interface=127.0.0.1", "--port", tls],
        cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    ports: dict[bool, int] = {}
    for line in process.stdout:
        if match := _LISTENING.search(line):
            ports[bool(match.group(1))] = int(match.group(2))
        if len(ports) == 2:
            break
    else:
        raise SystemExit("ssedemo did not start")
    drain = process.stdout
    threading.Thread(target=lambda: drain.read(), daemon=True).start()
    return process, ports[False], ports[True]


def open_streams(port: int) -> int:
    url = f"http://127.0.0.1:{port}/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        streams: int = json.load(response)["streams"]
        return streams


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError("no VmRSS")


async def stream(
    port: int, context: ssl.SSLContext, protocol: str
) -> asyncio.StreamWriter:
    """
    Open C{/sse} over TLS and wait for the greeting.

    @return: The connection, still open.
    """
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost"
    )
    if protocol == "h2":
        client = H2Connection(H2Configuration(client_side=True))
        client.initiate_connection()
        headers = [(":method", "GET"), (":path", "/sse")]
        headers += [(":scheme", "https"), (":authority", "localhost")]
        client.send_headers(1, headers, end_stream=True)
        writer.write(client.data_to_send())
    else:
        writer.write(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
    received = b""
    while b"Gotcha" not in received:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed before the greeting")
        received += chunk
    return writer


async def churn(options: argparse.Namespace, pid: int, http: int, tls: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([options.protocol])
    in_flight = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> asyncio.StreamWriter:
        async with in_flight:
            return await stream(tls, context, options.protocol)

    rss = []
    for wave in range(1, options.waves + 1):
        started = time.monotonic()
        writers = await asyncio.wait_for(
            asyncio.gather(*(one() for _ in range(options.clients))), DEADLINE
        )
        rate = options.clients / (time.monotonic() - started)
        for writer in writers:
            writer.transport.abort()
        deadline = time.monotonic() + DEADLINE
        while open_streams(http) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        rss.append(rss_mb(pid))
        print(f"wave {wave}: {rate:,.0f} connects/s, RSS {rss[-1]:.1f} MB")
    print(f"RSS after the last wave / after the first: {rss[-1] / rss[0]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=["h2", "http/1.1"], default="h2")
    parser.add_argument("--clients", type=int, default=1000, help="per wave (1000)")
    parser.add_argument("--waves", type=int, default=10, help="(10)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tls-churn-") as directory:
        process, http, tls = start(Path(directory))
        try:
            asyncio.run(churn(options, process.pid, http, tls))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(DEADLINE)


if __name__ == "__main__":
    main()
