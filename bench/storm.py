"""
The restart storm: every client comes back at once after a restart.

N streams are opened on ssedemo (the plain connect ramp, timed), 50 events
are published through C{POST /publish} and reach every stream; then ssedemo
is stopped with C{SIGTERM} (each stream gets its jittered C{retry:}) and
started again on the same port, while a publisher goes on publishing one
event every 100 ms (with C{--redis}, while no ssedemo runs, it appends its
events to the Redis stream itself, as another instance would). The loadgen
(C{bench/sseload.c storm}) probes the port every 5 ms; once it accepts, every
client reconnects at once with its own C{Last-Event-ID}, at most 1,000
connects in flight as in the ramp (not after its C{retry:}: then the jitter,
3 to 6 s by default, would decide the figure, not the server).

Every event's data is the publisher's number for it, so each client's
sequence is checked against what the publisher got back: every acknowledged
event after the client's last one, in order, none twice, with the id the
publisher was given; after a C{resync}, every event after the C{resync}'s id.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import run

SSELOAD_SOURCE = run.BENCH / "sseload.c"
SSELOAD = run.BENCH / "build" / "sseload"
VARIANTS = ("redis", "memory", "workers2")
"""C{--redis}; the in-memory log; C{--redis --workers 2}."""
PRELOAD = 50  # events every stream has before the restart
INTERVAL = 0.1  # seconds between two events of the publisher
LIVE_EVENTS = 5  # events published after every client is back
WAIT = 30  # seconds for every stream to have an event


class Publisher:
    """
    Publishes numbered events (data: the number) and keeps what each
    attempt got: the id, when it was sent and answered, and how.
    """

    def __init__(self, port: int, redis_port: int | None) -> None:
        self.port = port
        self.redis_port = redis_port
        self.records: list[dict[str, Any]] = []
        self._http: http.client.HTTPConnection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def publish(self) -> str | None:
        """
        Publish the next number: through C{/publish}, or with C{--redis}
        straight into Redis when ssedemo refuses connections.

        @return: The event's id, if the publish was acknowledged.
        """
        with self._lock:
            seq = len(self.records) + 1
            record: dict[str, Any] = {"seq": seq, "id": None, "sent": time.monotonic()}
            try:
                record["id"], record["via"] = self._post(seq), "http"
            except ConnectionRefusedError:
                self._close()
                record["via"] = "refused"
                if self.redis_port is not None:
                    try:
                        record["id"], record["via"] = self._xadd(seq), "redis"
                    except (OSError, ValueError) as e:
                        record["via"] = f"redis: {e}"
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                self._close()
                record["via"] = f"failed: {type(e).__name__}"
            record["acked"] = time.monotonic()
            self.records.append(record)
            return record["id"]  # type: ignore[no-any-return]

    def _post(self, seq: int) -> str | None:
        if self._http is None:
            self._http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        body = json.dumps({"data": str(seq)})
        headers = {"Content-Type": "application/json"}
        self._http.request("POST", "/publish", body=body, headers=headers)
        response = self._http.getresponse()
        answer = response.read()
        if response.status != 200:
            raise ValueError(f"status {response.status}")
        event_id: str = json.loads(answer)["id"]
        return event_id

    def _xadd(self, seq: int) -> str:
        """
        Append the event to ssedemo's Redis stream (C{ssedemo}, its default
        key) as a plain entry.
        """
        args = [b"XADD", b"ssedemo", b"*", b"data", str(seq).encode()]
        args += [b"topic", b"default"]
        command = b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a), a) for a in args
        )
        assert self.redis_port is not None
        with socket.create_connection(("127.0.0.1", self.redis_port), 5) as s:
            s.sendall(command)
            reply = s.makefile("rb")
            head = reply.readline()
            if not head.startswith(b"$"):  # an error ("-ERR ...")
                raise ValueError(head.decode(errors="replace").strip())
            return reply.readline().decode().strip()

    def _close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def start(self) -> None:
        """
        Publish one event every L{INTERVAL} in a thread, until L{stop}.
        """

        def tick() -> None:
            due = time.monotonic()
            while not self._stop.is_set():
                self.publish()
                # No catching up after a slow publish: one every INTERVAL.
                due = max(due + INTERVAL, time.monotonic())
                self._stop.wait(max(0.0, due - time.monotonic()))

        self._thread = threading.Thread(target=tick, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close()

    def acked_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for r in self.records if r["id"] and r["sent"] > t)


class Loadgen:
    """
    C{sseload storm}, steered line by line.
    """

    def __init__(self, port: int, clients: int, dump: Path, errors: IO[bytes]) -> None:
        command = [str(SSELOAD), "storm", "--port", str(port)]
        command += ["--clients", str(clients), "--dump", str(dump)]
        command += ["--connect-timeout", str(run.CONNECT_TIMEOUT)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors
        )
        assert self.process.stdout is not None
        self.lines = run.Lines(self.process.stdout)

    def tell(self, command: str, answer: str, seconds: float) -> list[str]:
        """
        Send a command, if any, and wait for the answer line.

        @return: The answer's words after the first.
        """
        if command:
            assert self.process.stdin is not None
            self.process.stdin.write(command.encode() + b"\n")
            self.process.stdin.flush()
        return self.lines.expect(answer, seconds).split()[1:]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=run.SLACK)


def server_name(variant: str) -> str:
    return "ssedemo-workers2" if variant == "workers2" else "ssedemo"


def start_server(
    variant: str, port: int, extra: Sequence[str], log: Path, workdir: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            run.server_command(server_name(variant), port, extra),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """
    Stop a server with SIGTERM and wait until it and its workers are gone.
    """
    tree = run.process_tree([process.pid])
    note = run.stop(process)
    if note:
        raise run.BenchError(f"the server was {note}")
    deadline = time.monotonic() + run.STOP_DEADLINE
    while any(Path(f"/proc/{pid}").exists() for pid in tree[1:]):
        if time.monotonic() > deadline:
            raise run.BenchError("workers still running after the parent ended")
        time.sleep(0.01)


def storm_once(variant: str, clients: int) -> dict[str, Any]:
    """
    One restart storm of C{clients} streams on ssedemo in C{variant}.

    @return: The figures (L{analyse}), or the error.
    """
    record: dict[str, Any] = {"variant": variant, "clients": clients, "error": None}
    record["revision"] = run.ssedemo_revision()
    with tempfile.TemporaryDirectory(prefix=f"bench-storm-{variant}-") as tmp:
        workdir = Path(tmp)
        dump, log = workdir / "streams.txt", workdir / "server.log"
        publisher: Publisher | None = None
        with ExitStack() as stack:
            try:
                extra: list[str] = []
                redis_port = None
                if variant != "memory":
                    redis = stack.enter_context(run.running_redis())
                    extra, redis_port = ["--redis", redis.url], redis.port
                port = run.free_port()
                server = start_server(variant, port, extra, log, workdir)
                stack.callback(lambda: run.stop(server))
                run.wait_listening(server, port, log)
                if variant == "workers2":
                    run.wait_workers(log, 2)
                errors = stack.enter_context((workdir / "sseload.stderr").open("wb"))
                loadgen = Loadgen(port, clients, dump, errors)
                stack.callback(loadgen.close)
                limit = run.CONNECT_TIMEOUT + run.SLACK
                reached, ramp = loadgen.tell("", "READY", limit)
                record["reached"], record["ramp_s"] = int(reached), float(ramp)
                publisher = Publisher(port, redis_port)
                for _ in range(PRELOAD):
                    publisher.publish()
                have = loadgen.tell(f"WAIT {PRELOAD} {WAIT}", "HAVE", WAIT + run.SLACK)
                record["had_preload"] = int(have[0])
                loadgen.tell("STOP", "STOPPING", run.SLACK)
                publisher.start()
                record["stopped"] = time.monotonic()
                stop_server(server)
                assert loadgen.process.stdin is not None
                loadgen.process.stdin.write(
                    f"PROBE {run.START_DEADLINE:.0f}\n".encode()
                )
                loadgen.process.stdin.flush()
                record["started"] = time.monotonic()
                server = start_server(variant, port, extra, log, workdir)
                up = loadgen.tell("", "UP", run.START_DEADLINE + run.SLACK)
                if up == ["none"]:
                    raise run.BenchError(f"ssedemo did not come back: {run.tail(log)}")
                record["up"] = float(up[0])
                back = loadgen.tell("", "BACK", limit)
                record["back"], record["back_s"] = int(back[0]), float(back[1])
                # Live events for every client, then one last that all must get.
                deadline = time.monotonic() + WAIT
                after = time.monotonic()
                while publisher.acked_since(after) < LIVE_EVENTS:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise run.BenchError("publishing failed after the restart")
                    time.sleep(INTERVAL)
                publisher.stop()
                last = len(publisher.records) + 1
                if publisher.publish() is None:
                    raise run.BenchError("the last publish failed")
                have = loadgen.tell(f"WAIT {last} {WAIT}", "HAVE", WAIT + run.SLACK)
                record["had_last"] = int(have[0])
                assert loadgen.process.stdin is not None
                loadgen.process.stdin.write(b"END\n")
                loadgen.process.stdin.flush()
                record["loadgen"] = json.loads(loadgen.lines.expect("{", run.SLACK))
                loadgen.process.wait(timeout=run.SLACK)
                record.update(analyse(record, publisher.records, dump))
            except (
                run.BenchError,
                OSError,
                ValueError,
                subprocess.SubprocessError,
            ) as e:
                record["error"] = f"{e} {run.tail(workdir / 'sseload.stderr')}".strip()
            finally:
                if publisher is not None:
                    publisher.stop()
                    record["publishes"] = publisher.records
    return record


def analyse(
    record: dict[str, Any], publishes: Sequence[dict[str, Any]], dump: Path
) -> dict[str, Any]:
    """
    Check every client's events against what the publisher got back, and
    time the storm from the moment the port accepted connections again.

    @return: The figures: times in seconds after the port came back, and
        counts of clients and events.
    """
    up = record["up"]
    acked = {p["seq"]: p for p in publishes if p["id"]}
    sent = {p["seq"]: p["sent"] for p in publishes}
    seq_by_id = {p["id"]: seq for seq, p in acked.items()}
    seen = {int(seq): i for seq, i in record["loadgen"]["ids"].items()}
    replayed: list[float] = []
    live: list[float] = []
    totals = dict.fromkeys(
        ("checked", "lost", "doubled", "unacknowledged", "resync_clients"), 0
    )
    totals |= {"not_back": 0, "no_live": 0, "clients_with_errors": 0}
    for line in dump.read_text().splitlines():
        fields = line.split()
        resyncs, mismatched = int(fields[2]), int(fields[4])
        resync_id, greeted = fields[5], float(fields[6])
        events = [
            (int(s), float(t)) for s, _, t in (f.partition(":") for f in fields[7:])
        ]
        numbers = [s for s, _ in events if s]
        doubled = sum(1 for a, b in itertools.pairwise(numbers) if b <= a)
        if greeted < 0:
            totals["not_back"] += 1
            totals["clients_with_errors"] += 1
            continue
        before = max((s for s, t in events if s and t < greeted), default=0)
        expected = set(acked)
        resynced = [t for s, t in events if s == 0 and t >= greeted]
        if resyncs:
            totals["resync_clients"] += 1
            rid = "" if resync_id == '""' else resync_id
            if rid in seq_by_id:
                newest = seq_by_id[rid]
            elif rid:
                newest = before  # an id nobody was given: no gap allowed
            else:
                newest = max(
                    (s for s, p in acked.items() if p["acked"] < greeted), default=0
                )
            expected -= set(range(before + 1, newest + 1))
        received = set(numbers)
        lost = len(expected - received)
        totals["checked"] += len(numbers)
        totals["lost"] += lost
        totals["doubled"] += doubled
        totals["unacknowledged"] += len(received - set(acked))
        if lost or doubled or mismatched:
            totals["clients_with_errors"] += 1
        # Its replay: what was published before it was back (or its resync).
        if resynced:
            replayed.append(resynced[0])
        else:
            owed = [
                t
                for s, t in events
                if s > before and s in acked and acked[s]["acked"] < greeted
            ]
            replayed.append(max(owed, default=greeted))
        first = [t for s, t in events if s and t >= greeted and sent[s] > greeted]
        if first:
            live.append(first[0])
        else:
            totals["no_live"] += 1
    wrong_ids = sum(1 for s, i in seen.items() if s in acked and acked[s]["id"] != i)
    ramp = record["ramp_s"]
    replay_s = max(replayed) - up if replayed else None
    live_s = max(live) - up if live else None
    return totals | {
        "wrong_ids": wrong_ids + record["loadgen"]["id_mismatches"],
        "published": len(acked),
        "published_while_down": sum(1 for p in acked.values() if p["via"] == "redis"),
        "startup_s": up - record["started"],
        "replay_s": replay_s,
        "live_s": live_s,
        "replay_ratio": replay_s / ramp if replay_s is not None and ramp else None,
        "live_ratio": live_s / ramp if live_s is not None and ramp else None,
        "connect_rate": record["reached"] / ramp if ramp else None,
    }


def run_storm(options: argparse.Namespace) -> list[dict[str, Any]]:
    """
    The restart storm in each of C{options.storm_variants}.
    """
    run.build_loadgen(SSELOAD_SOURCE, SSELOAD)
    records = []
    for variant in options.storm_variants:
        print(f"storm: {options.storm_clients} streams, {variant}", flush=True)
        record = storm_once(variant, options.storm_clients)
        print(f"  {record['error'] or summary(record)}", flush=True)
        records.append(record)
    return records


def summary(record: dict[str, Any]) -> str:
    return (
        f"ramp {record['ramp_s']:.2f} s,"
        f" replayed {run.number(record['replay_s'], 2)} s,"
        f" live {run.number(record['live_s'], 2)} s after the port came back;"
        f" {record['resync_clients']} resync, {record['lost']} lost,"
        f" {record['doubled']} doubled"
    )


LABELS = {
    "redis": "`--redis`",
    "memory": "in-memory log",
    "workers2": "`--redis --workers 2`",
}


def markdown(
    records: Sequence[dict[str, Any]], options: argparse.Namespace
) -> list[str]:
    """
    @return: The lines of the restart storm's section of C{RESULTS.md}.
    """
    lines = [
        "",
        "## Restart storm",
        "",
        f"{options.storm_clients:,} streams open on ssedemo, {PRELOAD} events"
        " published, then ssedemo stopped (SIGTERM) and started again on the"
        " same port while one event is published every"
        f" {INTERVAL * 1000:.0f} ms (with Redis, while no ssedemo runs, straight"
        " into the Redis stream). Every client reconnects with its own"
        " Last-Event-ID as soon as the port accepts connections (probed every"
        " 5 ms; with `--workers`, when the parent has bound it), at most 1,000"
        " connects in flight, as in the ramp. Times from then: until the last"
        " client has its replay (every event published before it was back, or"
        " its `resync`), and until the last has its first live event"
        " (published after it was back). Ratio: against the plain connect ramp"
        " of the same streams at the start of the run (target: at most 1.5x)."
        " Checked per client against the ids the publisher got back: lost"
        " (an acknowledged event after its Last-Event-ID, or after its"
        " `resync`'s id, that never came), doubled or out of order, wrong ids.",
        "",
        "| log | streams | ramp s | connects/s | start-up s | back s"
        " | replayed s | ratio | first live s | ratio | resync | ids checked"
        " | lost | doubled | wrong ids | published (while down) | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in records:
        label = LABELS.get(r["variant"], r["variant"])
        if r["error"] and "replay_s" not in r:
            lines.append(
                f"| {label} | {r['clients']:,} | "
                + " | ".join(["—"] * 15)
                + f" | {r['error']} |"
            )
            continue
        load = r["loadgen"]
        problems = [f"{k} {n}" for k, n in load["errors"].items() if n]
        problems += [
            f"{r[k]} clients {k.replace('_', ' ')}"
            for k in ("not_back", "no_live")
            if r[k]
        ]
        cells = [
            label,
            run.number(r["reached"], 0),
            run.number(r["ramp_s"], 2),
            run.number(r["connect_rate"], 0),
            run.number(r["startup_s"], 2),
            run.number(r["back_s"], 2),
            run.number(r["replay_s"], 2),
            run.number(r["replay_ratio"], 2) + "x",
            run.number(r["live_s"], 2),
            run.number(r["live_ratio"], 2) + "x",
            str(r["resync_clients"]),
            run.number(r["checked"], 0),
            str(r["lost"]),
            str(r["doubled"]),
            str(r["wrong_ids"]),
            f"{r['published']} ({r['published_while_down']})",
            ", ".join(problems) or "0",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
