"""
What opening one stream costs the server, measured in its own process.

ssedemo runs in this process (its twistd service, on 127.0.0.1); clients in
the same thread connect in batches and send C{GET /sse}, then the reactor is
turned by hand until the hub holds them all. Only the turns of the reactor
are timed, so the figure is the server's CPU per new stream, the kernel's
part of accept(), recv() and send() included.

    .venv/bin/python bench/connect_cost.py                  # CPU µs per connect
    .venv/bin/python bench/connect_cost.py --profile        # Python calls, GC objects
    .venv/bin/python bench/connect_cost.py --instructions   # under valgrind
    .venv/bin/python bench/connect_cost.py --resume ID      # streams resuming after ID

Wall-clock figures on a shared machine move by ten percent from one run to
the next. C{--instructions} counts the instructions executed in user space
instead (valgrind's callgrind, with a fixed hash seed): it runs this script
twice, for 100 and for 2,100 streams, and divides the difference by 2,000,
so start-up cancels out; two runs agree to about 0.1 %. It counts the
clients' side too (the same in every version), not the kernel's, and not
the streams' end (the clients stay connected until the process exits).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REQUEST = b"GET /sse HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n%s\r\n"


def serve() -> tuple[Any, Any, int]:
    """
    Start ssedemo's service on an ephemeral port of 127.0.0.1.

    @return: The reactor, the hub and the port number.
    """
    from twisted.internet import reactor

    from sse_twisted.hub import Hub
    from sse_twisted.tap import Options, makeService

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = Options()
    options.parseOptions(
        ["--port", f"tcp:{port}:interface=127.0.0.1", "--heartbeat", "0"]
    )
    service = makeService(options)
    # Found before the service starts and freezes what exists.
    hub = next(o for o in gc.get_objects() if isinstance(o, Hub))
    service.privilegedStartService()
    service.startService()
    for _ in range(20):
        reactor.iterate(0.01)
    return reactor, hub, port


def open_streams(
    reactor: Any,
    hub: Any,
    port: int,
    count: int,
    batch: int,
    profile: Any = None,
    resume: str | None = None,
) -> tuple[list[socket.socket], float]:
    """
    Open C{count} streams, C{batch} connects at a time, each resuming after
    C{resume} if given (as after a restart: with the in-memory log, each
    gets a C{resync}).

    @return: The clients' sockets and the server's CPU seconds.
    """
    extra = b"" if resume is None else b"Last-Event-ID: %s\r\n" % resume.encode()
    request = REQUEST % (f"127.0.0.1:{port}".encode(), extra)
    clients: list[socket.socket] = []
    base = len(hub)
    cpu = 0.0
    while len(clients) < count:
        for _ in range(min(batch, count - len(clients))):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(request)
            clients.append(client)
        started = time.thread_time()
        if profile is not None:
            profile.enable()
        deadline = time.monotonic() + 30
        while len(hub) < base + len(clients):
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(hub) - base} of {len(clients)} opened")
            reactor.iterate(0)
        if profile is not None:
            profile.disable()
        cpu += time.thread_time() - started
    return clients, cpu


def close(reactor: Any, hub: Any, clients: list[socket.socket]) -> None:
    for client in clients:
        client.close()
    deadline = time.monotonic() + 30
    while len(hub) and time.monotonic() < deadline:
        reactor.iterate(0.001)


def instructions(connects: int, resume: str | None) -> int:
    """
    @return: The user-space instructions of a run of this script that opens
        C{connects} streams (resuming after C{resume}, if given), counted by
        callgrind.
    """
    more = [] if resume is None else ["--resume", resume]
    with tempfile.TemporaryDirectory() as scratch:
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={scratch}/out",
                sys.executable,
                __file__,
                "--connects",
                str(connects),
                "--repeat",
                "1",
                "--batch",
                "100",
                "--keep-open",
                *more,
            ],
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise SystemExit(run.stderr)
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connects", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--resume", metavar="ID", help="streams resume after ID")
    parser.add_argument("--keep-open", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instructions:
        small, large = instructions(100, args.resume), instructions(2100, args.resume)
        print(f"user-space instructions per new stream: {(large - small) / 2000:,.0f}")
        return
    reactor, hub, port = serve()
    if args.profile:
        clients, _ = open_streams(
            reactor, hub, port, 500, args.batch, None, args.resume
        )
        gc.collect()
        before = len(gc.get_objects())
        profile = cProfile.Profile()
        more, _ = open_streams(
            reactor, hub, port, args.connects, args.batch, profile, args.resume
        )
        gc.collect()
        tracked = (len(gc.get_objects()) - before) / args.connects - 1  # the client
        calls = pstats.Stats(profile).total_calls / args.connects  # type: ignore[attr-defined]
        print(f"Python calls per new stream: {calls:.1f}")
        print(f"objects the garbage collector tracks per open stream: {tracked:.1f}")
        close(reactor, hub, clients + more)
        return
    figures = []
    for _ in range(args.repeat):
        clients, cpu = open_streams(
            reactor, hub, port, args.connects, args.batch, None, args.resume
        )
        figures.append(cpu / args.connects * 1e6)
        if args.keep_open:
            os._exit(0)
        close(reactor, hub, clients)
    print(
        "server CPU µs per new stream: "
        + " ".join(f"{f:.1f}" for f in figures)
        + f"; median {statistics.median(figures):.1f}"
    )


if __name__ == "__main__":
    main()
