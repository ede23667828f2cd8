"""
Two real C{twistd ssedemo} instances on a real replicated Redis under
Sentinel (a master, two replicas, three sentinels): the master is killed
while a publisher posts, and the sentinels promote a replica.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from redis_sentinel import ReplicatedRedis, replicated_redis
from test_scale_out import StreamClient, post, streams
from twistd_process import TwistdServer, eventually

PUBLISH_EVERY = 0.02


@contextmanager
def sentinel_instances(
    redis: ReplicatedRedis, *options: str
) -> Iterator[list[TwistdServer]]:
    with ExitStack() as stack:
        servers = []
        for _ in range(2):
            args = ["--redis", redis.url(), "--heartbeat", "0", *options]
            server = TwistdServer(args=args).start()
            stack.callback(server.stop)
            servers.append(server)
        for server in servers:
            eventually(lambda s=server: s.health()["broker"] == "ok", "broker ok")
        yield servers


@dataclass
class Publisher:
    """
    Posts every 20 ms, to each instance in turn, and notes the answers.
    """

    servers: list[TwistdServer]
    accepted: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    refusals: list[tuple[int, str | None, object]] = field(default_factory=list)

    def publish(self, count: int) -> None:
        pause = threading.Event()
        for _ in range(count):
            n = len(self.statuses)
            status, body, retry_after = post(self.servers[n % 2].port, f"m{n}")
            self.statuses.append(status)
            if status == 200:
                self.accepted.append(str(body["id"]))
            else:
                self.refusals.append((status, retry_after, body.get("error")))
            pause.wait(PUBLISH_EVERY)

    def until_recovered(self, limit: int = 1500) -> None:
        """
        Publish until 20 in a row are accepted (bounded).
        """
        for _ in range(limit):
            self.publish(1)
            if self.statuses[-20:] == [200] * 20:
                return
        raise AssertionError(f"publishing did not recover: {self.statuses[-40:]}")


def fail_over(redis: ReplicatedRedis, publisher: Publisher) -> None:
    """
    Kill the master with SIGKILL while publishing, until the sentinels have
    promoted a replica and publishing works again; then bring the old master
    back, which the sentinels make a replica of the new one.
    """
    publisher.publish(25)
    old = redis.master
    old.kill(signal.SIGKILL)
    publisher.until_recovered()
    new = redis.promoted(old.port)
    old.start()
    redis.wait_for(
        lambda: old.cli("ROLE").startswith("slave"), "the old master a replica"
    )
    # Ask the sentinels at each look: they may fail over once more (a
    # replica that was stopped a moment ago can be judged down meanwhile).

    def replicating() -> bool:
        master = redis.named_master()
        return master is not None and (
            f"port={old.port},state=online" in master.cli("INFO", "replication")
        )

    try:
        redis.wait_for(replicating, "the old master replicating")
    except AssertionError as e:
        raise AssertionError(
            f"{e}: {new.cli('INFO', 'replication')} / {old.cli('ROLE')}"
        ) from None


def check_delivery(clients: list[StreamClient], accepted: list[str]) -> None:
    """
    Every accepted event reached every stream once, in the stream's order.
    """
    for client in clients:
        received = client.wait_for_ids(accepted)
        assert len(received) == len(set(received))
        positions = [received.index(i) for i in accepted]
        assert positions == sorted(positions)
        assert not client.ended.is_set()


def test_failover_loses_no_acknowledged_event() -> None:
    """
    With C{--redis-replicas 1}: every event that got 200 reaches every
    stream on both instances once and in order; every refusal is a 503 with
    Retry-After; publishing works again on the new master without
    restarting ssedemo; the old master, back as a replica, changes nothing.
    """
    with (
        replicated_redis() as redis,
        sentinel_instances(
            redis, "--redis-replicas", "1", "--redis-replica-timeout", "0.5"
        ) as servers,
        streams(*[(s.port, None) for s in servers for _ in range(2)]) as clients,
    ):
        publisher = Publisher(servers)
        fail_over(redis, publisher)
        assert publisher.statuses[:25] == [200] * 25
        assert {(status, retry) for status, retry, _ in publisher.refusals} <= {
            (503, "1")
        }
        check_delivery(clients, publisher.accepted)
        before = [len(c.events) for c in clients]
        publisher.publish(20)
        assert publisher.statuses[-20:] == [200] * 20
        check_delivery(clients, publisher.accepted)
        for server in servers:
            assert server.health()["broker"] == "ok"
            assert b"connected to Redis at 127.0.0.1:" in server.output
        after_return = [c.events[n:] for c, n in zip(clients, before, strict=True)]
        assert [e.type for events in after_return for e in events] == ["message"] * 80


def test_without_replicas_a_200_means_only_the_master_has_it() -> None:
    """
    Why C{--redis-replicas} exists (documentation, not a failure): without
    it, a 200 means the master stored the event, not that a replica has it.
    With the replicas stopped, publishes still get 200 although no replica
    acknowledged them, so a crash of the master then would lose them; with
    C{--redis-replicas 1} the same publishes get 503. The failover itself
    works the same: streams stay open and publishing recovers.
    """
    with (
        replicated_redis() as redis,
        sentinel_instances(redis) as servers,
        streams(*[(s.port, None) for s in servers]) as clients,
    ):
        for replica in redis.replicas:
            assert replica.process is not None
            replica.process.send_signal(signal.SIGSTOP)
        try:
            unreplicated = Publisher(servers)
            unreplicated.publish(5)
            assert unreplicated.statuses == [200] * 5
        finally:
            for replica in redis.replicas:
                assert replica.process is not None
                replica.process.send_signal(signal.SIGCONT)
        publisher = Publisher(servers)
        fail_over(redis, publisher)
        check_delivery(clients, publisher.accepted)
    with (
        replicated_redis() as redis,
        sentinel_instances(
            redis, "--redis-replicas", "1", "--redis-replica-timeout", "0.2"
        ) as servers,
    ):
        for replica in redis.replicas:
            assert replica.process is not None
            replica.process.send_signal(signal.SIGSTOP)
        try:
            waited = Publisher(servers)
            waited.publish(3)
        finally:
            for replica in redis.replicas:
                assert replica.process is not None
                replica.process.send_signal(signal.SIGCONT)
        assert waited.statuses == [503] * 3
        assert all("not known to be stored" in str(e) for _, _, e in waited.refusals)
