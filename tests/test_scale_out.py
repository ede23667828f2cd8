"""
Several real C{twistd ssedemo} processes on one real C{redis-server}: the
behaviour of C{--redis} as users see it, faults included.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from redis_server import RedisServer, free_port, running_redis
from twistd_process import DEADLINE, TWISTD, TwistdServer, eventually

from sse_twisted.testing import EventStreamParser, ParsedEvent


class StreamClient:
    """
    One open C{GET /sse}, read by a thread into a spec-following parser.
    """

    def __init__(self, port: int, last_event_id: str | None = None) -> None:
        self._connection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=DEADLINE
        )
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        self._connection.request("GET", "/sse", headers=headers)
        self._response = self._connection.getresponse()
        assert self._response.status == 200
        self._parser = EventStreamParser()
        self._lock = threading.Lock()
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while chunk := self._response.read1(65536):
                with self._lock:
                    self._parser.feed(chunk)
        except (OSError, http.client.HTTPException):
            pass
        self.ended.set()

    @property
    def events(self) -> list[ParsedEvent]:
        """
        The events with an id (published ones and resyncs) so far.
        """
        with self._lock:
            return [e for e in self._parser.events if e.last_event_id]

    def ids(self) -> list[str]:
        return [e.last_event_id for e in self.events if e.type != "resync"]

    def wait_for_ids(self, wanted: list[str]) -> list[str]:
        """
        Wait (bounded) until every id of C{wanted} has arrived.
        """
        eventually(lambda: set(wanted) <= set(self.ids()), f"ids {wanted}")
        return self.ids()

    def close(self) -> None:
        sock = self._connection.sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(DEADLINE)
        self._connection.close()


def post(
    port: int, data: str, path: str = "/publish"
) -> tuple[int, dict[str, object], str | None]:
    """
    @return: The status, the JSON body and the C{Retry-After} header.
    """
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps({"data": data}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            return response.status, json.load(response), response.headers["Retry-After"]
    except urllib.error.HTTPError as error:
        return error.code, json.load(error), error.headers["Retry-After"]


@contextmanager
def instances(redis: RedisServer | str, count: int) -> Iterator[list[TwistdServer]]:
    url = redis if isinstance(redis, str) else redis.url
    with ExitStack() as stack:
        servers = []
        for _ in range(count):
            server = TwistdServer(args=["--redis", url, "--heartbeat", "0"]).start()
            stack.callback(server.stop)
            servers.append(server)
        for server in servers:
            eventually(
                lambda s=server: s.health().get("broker") == "ok" or None, "broker ok"
            )
        yield servers


@contextmanager
def streams(*ports_and_ids: tuple[int, str | None]) -> Iterator[list[StreamClient]]:
    clients = [StreamClient(port, last) for port, last in ports_and_ids]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def test_publish_on_one_instance_reaches_every_instance(
    redis_server: RedisServer,
) -> None:
    """
    An event published on A reaches the streams on A and on B with the same
    id, the Redis entry id; the receipt has that id and no delivery count.
    """
    with (
        instances(redis_server, 2) as (a, b),
        streams((a.port, None), (b.port, None)) as (
            on_a,
            on_b,
        ),
    ):
        status, receipt, _ = post(a.port, "hello")
        assert status == 200
        assert set(receipt) == {"id", "topic"}
        entry_id = str(receipt["id"])
        assert redis_server.cli("XRANGE", "ssedemo", entry_id, entry_id).splitlines()[
            1:
        ] == [
            "data",
            "hello",
            "topic",
            "default",
        ]
        for client in (on_a, on_b):
            assert client.wait_for_ids([entry_id]) == [entry_id]
            assert client.events[0].data == "hello"
        status, receipt, _ = post(b.port, "{}", path="/api")
        assert status == 200 and receipt == {"id": receipt["id"], "topic": "default"}
        assert on_a.wait_for_ids([str(receipt["id"])])[-1] == receipt["id"]
        assert a.health()["broker"] == "ok"
        text = "ünïcödé ✓\nsecond line"
        entry_id = str(post(b.port, text)[1]["id"])
        for client in (on_a, on_b):
            client.wait_for_ids([entry_id])
            assert client.events[-1].data == text


def test_resume_on_another_instance_after_a_kill(redis_server: RedisServer) -> None:
    """
    A client of A, killed with SIGKILL, resumes on B from its last id: it
    gets what it missed, then live events, none lost or doubled.
    """
    with instances(redis_server, 2) as (a, b):
        with streams((a.port, None)) as (first,):
            before = [str(post(a.port, f"a{n}")[1]["id"]) for n in range(3)]
            first.wait_for_ids(before)
            assert a.process is not None
            a.process.kill()
            assert first.ended.wait(DEADLINE)
        missed = [str(post(b.port, f"b{n}")[1]["id"]) for n in range(3)]
        with streams((b.port, before[-1])) as (resumed,):
            resumed.wait_for_ids(missed)
            live = str(post(b.port, "live")[1]["id"])
            assert resumed.wait_for_ids([live]) == [*missed, live]


def test_external_entries_are_delivered_and_malformed_ones_skipped(
    redis_server: RedisServer,
) -> None:
    """
    An entry added by another program (redis-cli) is delivered; one that
    cannot be sent is skipped without stopping the reader.
    """
    with instances(redis_server, 1) as (a,), streams((a.port, None)) as (client,):
        redis_server.cli("XADD", "ssedemo", "*", "nodata", "x")
        redis_server.cli("XADD", "ssedemo", "*", "data", "bad", "topic", "no spaces")
        good = redis_server.cli(
            "XADD", "ssedemo", "*", "data", "hello", "event", "tick"
        )
        assert client.wait_for_ids([good]) == [good]
        assert (client.events[0].type, client.events[0].data) == ("tick", "hello")
        assert b"skipped Redis entry" in a.output


def test_redis_restart_while_publishing_loses_nothing() -> None:
    """
    Redis is killed and restarted while a publisher keeps posting: the open
    streams stay open, every refused publish is a 503 with Retry-After, and
    every accepted one is delivered exactly once to the streams of both
    instances.
    """
    with (
        running_redis(durable=True) as redis,
        instances(redis, 2) as (a, b),
        streams((a.port, None), (b.port, None)) as clients,
    ):
        accepted: list[str] = []
        statuses: list[int] = []
        # Post until ten in a row are accepted after the restart (bounded).
        for n in range(300):
            if n == 15:
                redis.kill()
            if n == 30:
                redis.start()
            status, body, retry_after = post((a, b)[n % 2].port, f"m{n}")
            statuses.append(status)
            if status == 200:
                accepted.append(str(body["id"]))
            else:
                assert (status, retry_after) == (503, "1"), body
                assert "error" in body
            if n > 30 and statuses[-10:] == [200] * 10:
                break
            time.sleep(0.05)
        assert statuses[-10:] == [200] * 10
        assert statuses[:15] == [200] * 15
        assert 503 in statuses
        for client in clients:
            received = client.wait_for_ids(accepted)
            assert len(received) == len(set(received))
            assert not client.ended.is_set()
            assert [e.type for e in client.events if e.type == "resync"] == []


def test_serves_while_redis_is_unreachable_and_recovers() -> None:
    """
    With Redis not reachable at start, ssedemo serves anyway: /health says
    the broker is down, publishing answers 503, and a stream, which cannot
    know what it would miss from a log never read, is told to come back
    (a retry: field, then its end) rather than answered from nothing; once
    Redis is there, the broker is up, and streams and publishing work.
    """
    redis = RedisServer(port=free_port())
    try:
        with instances(redis.url, 0), ExitStack() as stack:
            server = TwistdServer(
                args=["--redis", redis.url, "--heartbeat", "0"]
            ).start()
            stack.callback(server.stop)
            assert server.health()["broker"] == "down"
            with streams((server.port, None)) as (early,):
                assert early.ended.wait(DEADLINE)
                assert early._parser.retry is not None
                assert early.events == []
            assert post(server.port, "x")[:1] == (503,)
            redis.start()
            eventually(lambda: server.health()["broker"] == "ok" or None, "broker ok")
            with streams((server.port, None)) as (client,):
                status, body, _ = post(server.port, "x")
                assert status == 200
                client.wait_for_ids([str(body["id"])])
    finally:
        redis.remove()


@pytest.mark.parametrize("url", ["localhost:6379", "redis://host:port/0"])
def test_malformed_redis_url_refuses_to_start(url: str) -> None:
    done = subprocess.run(
        [TWISTD, "-n", "ssedemo", "--redis", url],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert done.returncode != 0
    assert "--redis: " in done.stdout + done.stderr
    assert "redis://HOST:PORT/DB" in done.stdout + done.stderr


def test_clients_hop_between_instances_while_both_publish(
    redis_server: RedisServer,
) -> None:
    """
    Two publishers post to both instances while a client keeps leaving and
    resuming on the other instance: over all its connections it gets every
    accepted event once, in the stream's order, and never a resync.
    """
    with instances(redis_server, 2) as servers:
        accepted: list[str] = []
        lock = threading.Lock()

        def publish(worker: int) -> None:
            for n in range(40):
                status, body, _ = post(servers[(n + worker) % 2].port, f"{worker}-{n}")
                assert status == 200
                with lock:
                    accepted.append(str(body["id"]))
                time.sleep(0.03)

        publishers = [threading.Thread(target=publish, args=(w,)) for w in (0, 1)]
        received: list[str] = []
        last = str(post(servers[0].port, "before")[1]["id"])
        for thread in publishers:
            thread.start()
        hops = 0
        while (hops < 6 or any(t.is_alive() for t in publishers)) and hops < 60:
            with streams((servers[hops % 2].port, last)) as (client,):
                # Stay until this connection has had an event (its replay or
                # a live one), or nothing more is coming.
                eventually(
                    lambda c=client: (
                        c.events or not any(t.is_alive() for t in publishers)
                    ),
                    "an event on this connection",
                )
                events = client.events
            assert "resync" not in [e.type for e in events]
            received += [e.last_event_id for e in events]
            last = received[-1] if received else last
            hops += 1
        for thread in publishers:
            thread.join(DEADLINE)
        with streams((servers[hops % 2].port, last)) as (client,):
            rest = set(accepted) - set(received)
            received += client.wait_for_ids(sorted(rest))
        assert hops >= 6
        assert len(received) == len(set(received))
        assert set(received) == set(accepted)
        keys = [tuple(map(int, i.split("-"))) for i in received]
        assert keys == sorted(keys)


def published(port: int, data: str) -> str:
    """
    Publish C{data}, trying again (bounded) while the server answers 503.

    @return: The event's id.
    """
    answer = eventually(
        lambda: (lambda a: a if a[0] == 200 else None)(post(port, data)), "published"
    )
    return str(answer[1]["id"])


def test_restarted_workers_resume_every_client_exactly(
    redis_server: RedisServer,
) -> None:
    """
    Streams on C{--workers 2 --redis}; the server is stopped (SIGTERM),
    events are appended to Redis while no ssedemo runs, the server starts
    again and every client reconnects at once with its C{Last-Event-ID}
    while events are published: each gets exactly the events after its
    id, in order, once, and no resync (even those whose worker had not
    read the stream yet when they came).
    """
    args = ["--redis", redis_server.url, "--workers", "2", "--heartbeat", "0"]
    server = TwistdServer(args=args).start()
    try:
        port = server.port
        first = [published(port, f"e{i}") for i in range(3)]
        with streams(*[(port, None)] * 6) as clients:
            eventually(lambda: server.health()["status"] == "ok" or None, "up")
            more = [published(port, f"m{i}") for i in range(3)]
            for client in clients:
                client.wait_for_ids(more)
            server.stop()
            for client in clients:
                assert client.ended.wait(DEADLINE)
            last = [client.ids()[-1] for client in clients]
        assert set(last) == {more[-1]} and first[-1] < more[0]
        offline = [
            redis_server.cli("XADD", "ssedemo", "*", "data", f"o{i}") for i in range(3)
        ]
        server = TwistdServer(port=port, args=args).start()
        with streams(*[(port, last_id) for last_id in last]) as resumed:
            later = [published(port, f"l{i}") for i in range(3)]
            for client in resumed:
                assert client.wait_for_ids(offline + later) == offline + later
                assert "resync" not in [e.type for e in client.events]
    finally:
        server.stop()
