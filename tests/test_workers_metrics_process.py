"""
C{--workers 2} with C{--metrics} and with C{--max-clients}, as a user runs
them: a real C{twistd} parent, its real workers, a real C{redis-server}.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer
from test_workers_process import (
    alive,
    listening,
    pids_answering,
    streams_on_both_workers,
    worker_pids,
)
from twistd_process import DEADLINE, TWISTD, TwistdServer, eventually, read_until

Scrape = dict[str, float]


class Workers:
    """
    C{twistd -n ssedemo --workers 2 ...}: the port the workers serve, and
    the parent's metrics port if any.
    """

    def __init__(self, server: TwistdServer) -> None:
        self.server = server
        output = lambda: server.output  # noqa: E731
        eventually(lambda: listening(output(), 2), "two workers")
        found = re.search(rb"port (\d+) with 2 worker processes", output())
        assert found is not None
        self.port = int(found[1])
        parent_site = re.search(rb"\[-\] Site starting on (\d+)", output())
        self.metrics_port = None if parent_site is None else int(parent_site[1])

    def scrape(self) -> Scrape:
        """
        @return: The parent's C{/metrics}: each unlabelled sample by name.
        """
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=DEADLINE) as response:
            text = response.read().decode()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }

    def publish(self, data: str) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/publish",
            data=f"data={data}".encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            assert response.status == 200


@pytest.fixture
def workers_with(redis_server: RedisServer) -> Iterator[list[Workers]]:
    """
    Starts C{twistd -n ssedemo --workers 2} with further arguments; stops
    it and any worker left at the end.
    """
    started: list[Workers] = []
    yield started
    for workers in started:
        workers.server.stop()
        for pid in worker_pids(workers.server.output):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def start(
    redis: RedisServer,
    started: list[Workers],
    *args: str,
    env: dict[str, str] | None = None,
) -> Workers:
    base = ["--redis", redis.url, "--workers", "2", "--heartbeat", "0"]
    server = TwistdServer(args=[*base, *args], env=env)
    started.append(Workers(server.start()))
    return started[-1]


def is_open(stream: socket.socket) -> bool:
    """
    @return: Whether the server has neither closed nor reset C{stream}.
    """
    try:
        return stream.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except ConnectionError:
        return False


def test_metrics_cover_both_workers_and_survive_a_replacement(
    redis_server: RedisServer, workers_with: list[Workers], tmp_path: Path
) -> None:
    """
    The parent's one C{/metrics} sums both workers: streams opened and open,
    events delivered. After C{kill -9} of a worker, its streams no longer
    count but the counters never go back, and its replacement adds to them.
    """
    workers = start(
        redis_server,
        workers_with,
        *("--metrics", "tcp:0:interface=127.0.0.1"),
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    killed, kept = worker_pids(workers.server.output)
    [directory] = tmp_path.glob("ssedemo-metrics-*")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    streams = streams_on_both_workers(workers.port, lambda: workers.server.output)
    eventually(lambda: workers.scrape()["ssedemo_streams"] == 40, "40 streams")
    assert workers.scrape()["ssedemo_streams_opened_total"] == 40
    assert workers.scrape()["ssedemo_broker_up"] == 1
    workers.publish("one")
    for stream in streams:
        read_until(stream, b"data: one\n\n")
    eventually(lambda: workers.scrape()["ssedemo_deliveries_total"] == 40, "40")
    assert workers.scrape()["ssedemo_events_published_total"] == 1

    os.kill(killed, signal.SIGKILL)
    eventually(lambda: not alive(killed), "the worker to die")
    seen: list[Scrape] = []

    def replaced() -> bool:
        seen.append(workers.scrape())
        return listening(workers.server.output, 3)

    eventually(replaced, "a new worker")
    survivors = [s for s in streams if is_open(s)]
    assert 0 < len(survivors) < 40
    eventually(
        lambda: workers.scrape()["ssedemo_streams"] == len(survivors),
        "the dead worker's streams to stop counting",
    )
    for name in ("ssedemo_streams_opened_total", "ssedemo_deliveries_total"):
        assert [s[name] for s in seen] == [40] * len(seen), name
    assert workers.scrape()["ssedemo_events_published_total"] == 1

    new = worker_pids(workers.server.output)[2]
    assert pids_answering(workers.port, 2) == {kept, new}
    workers.publish("two")
    for stream in survivors:
        read_until(stream, b"data: two\n\n")

    def delivered() -> Scrape | None:
        scrape = workers.scrape()
        expected = 40 + len(survivors)
        return scrape if scrape["ssedemo_deliveries_total"] == expected else None

    after = eventually(delivered, "the second event's deliveries")
    assert after["ssedemo_events_published_total"] == 2
    assert after["ssedemo_streams_opened_total"] == 40
    assert after["ssedemo_broker_up"] == 1
    names = {p.name for p in directory.iterdir()}
    assert not any(str(killed) in name for name in names)
    assert {"counter_0.db", "histogram_0.db", f"counter_{new}.db"} <= names
    for stream in streams:
        stream.close()

    workers.server.stop()
    assert not directory.exists()


def opened(sock: socket.socket) -> bool:
    """
    Read the answer to C{GET /sse} sent on C{sock}: C{True} if the stream
    opened, C{False} if it was refused with only a C{retry:} and ended.
    """
    received = b""
    for _ in range(1000):
        chunk = sock.recv(65536)
        received += chunk
        if b"Gotcha" in received:
            return True
        if not chunk or received.endswith(b"\r\n0\r\n\r\n"):
            assert re.search(rb"retry: \d+\n\n", received), received
            return False
    raise AssertionError(received[-200:])


def health_by_pid(port: int, pids: int) -> dict[int, int]:
    """
    @return: The open streams each of C{pids} workers reports in
        C{/health} (asked on new connections, at most 400 times).
    """
    seen: dict[int, int] = {}
    for _ in range(400):
        url = f"http://127.0.0.1:{port}/health"
        with urllib.request.urlopen(url, timeout=DEADLINE) as response:
            health = json.load(response)
        seen[health["pid"]] = health["streams"]
        if len(seen) == pids:
            break
    return seen


def test_max_clients_limits_the_whole_server(
    redis_server: RedisServer, workers_with: list[Workers]
) -> None:
    """
    C{--max-clients 4 --workers 2}: each worker keeps at most 2 streams
    open, so the server never has more than 4, and turns the rest away
    with a C{retry:}; how many of the 4 are used depends on how the kernel
    spread the connections.
    """
    workers = start(redis_server, workers_with, "--max-clients", "4")
    held = []
    for _ in range(12):
        sock = socket.create_connection(("127.0.0.1", workers.port), DEADLINE)
        sock.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        held.append(sock)
    outcomes = [opened(sock) for sock in held]
    accepted = sum(outcomes)
    assert 2 <= accepted <= 4
    per_worker = health_by_pid(workers.port, 2)
    assert sorted(per_worker) == sorted(worker_pids(workers.server.output))
    assert all(streams <= 2 for streams in per_worker.values())
    assert sum(per_worker.values()) == accepted
    for sock in held:
        sock.close()


def test_max_clients_below_workers_is_refused_at_start(
    redis_server: RedisServer,
) -> None:
    result = subprocess.run(
        [
            *(TWISTD, "-n", "ssedemo", "--redis", redis_server.url),
            *("--workers", "2", "--max-clients", "1"),
        ],
        cwd=tempfile.gettempdir(),
        capture_output=True,
        timeout=DEADLINE,
    )
    assert result.returncode != 0
    refusal = b"--max-clients 1 is smaller than --workers 2"
    assert refusal in result.stdout + result.stderr
