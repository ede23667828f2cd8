"""
The load benchmark: ssedemo and its peers under the same workload.

For each repetition, each server in turn is started alone on 127.0.0.1, fed
by C{bench/loadgen.c} (N streams, then K broadcast rounds) and stopped. The
server's CPU time and memory are read from C{/proc} at the loadgen's phase
changes, so the CPU per delivery covers the broadcast rounds only. The medians
across repetitions go to C{bench/RESULTS.md} as a Markdown table, the raw
figures to C{bench/results/raw/}.

Run with the project's virtualenv (C{make bench}); only the standard library
is used here. The Python peers get their own virtualenv, C{bench/.venv}, made
on first use.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import queue
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from importlib import metadata
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
# The tests' redis-server launcher (standard library only) serves here too.
sys.path.insert(0, str(BENCH.parent / "tests"))
from redis_server import (  # noqa: E402
    REDIS_SERVER,
    RedisServer,
    free_port,
    running_redis,
)

LOADGEN_SOURCE = BENCH / "loadgen.c"
LOADGEN = BENCH / "build" / "loadgen"
CSERVER_SOURCE = BENCH / "cserver.c"
CSERVER = BENCH / "build" / "cserver"
PEERS = BENCH / "peers"
PEER_VENV = BENCH / ".venv"
PEER_PACKAGES = (
    "sse-starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "aiohttp",
    "aiohttp-sse",
)
# What the versions section names for the peers (starlette comes along).
PEER_VERSIONS = ("sse-starlette", "starlette", *PEER_PACKAGES[1:])
# ssedemo-python: ssedemo with its compiled fan-out turned off; c-epoll: the
# floor, a minimal C epoll server (cserver.c).
SERVERS = (
    "ssedemo",
    "ssedemo-python",
    "ssedemo-metrics",
    "c-epoll",
    "ssedemo-redis",
    "ssedemo-redis-replica",
    "ssedemo-workers2",
    "starlette",
    "aiohttp",
    "node",
    "ssedemo-hs256",
    "ssedemo-es256",
)
REDIS_SERVERS = frozenset(
    {"ssedemo-redis", "ssedemo-redis-replica", "ssedemo-workers2"}
)
"""Servers run with a redis-server of their own, whose CPU counts as theirs."""
WORKERS = {"ssedemo-workers2": 2}
"""Servers run as ssedemo --workers N: their CPU time is summed over all."""
PYTHON_PEERS = frozenset({"starlette", "aiohttp"})
SCENARIOS = ("broadcast", "churn", "storm", "ticker")
"""What make bench runs: the broadcast rounds against every server, then
against ssedemo alone the churn, the restart storm and the ticker."""
REPLICATED = {"ssedemo-redis-replica": 1}
"""Servers run with --redis-replicas N on a redis-server with N replicas."""
PUBLISHERS = frozenset({"ssedemo", "ssedemo-python", "ssedemo-metrics"}) | REDIS_SERVERS
"""Servers whose publish latency is timed (POST /publish, open to localhost)."""
PUBLISHES = 100  # timed publishes after the rounds

START_DEADLINE = 30.0  # seconds for a server to listen
SETTLE = 1.0  # seconds between listening and the baseline sample
STOP_DEADLINE = 10.0  # seconds for a server to exit on SIGTERM
PAUSE = 2.0  # seconds between two runs, for the sockets to wind down
CONNECT_TIMEOUT = 120  # the loadgen's phase-1 limit, seconds
ROUND_TIMEOUT = 30  # the loadgen's per-round limit, seconds
SLACK = 30.0  # extra seconds the runner allows the loadgen beyond its own


class BenchError(Exception):
    """
    A run could not be completed; the message says why.
    """


# Setup: the loadgen and the peers' virtualenv.


def build_loadgen(source: Path = LOADGEN_SOURCE, binary: Path = LOADGEN) -> Path:
    """
    Compile the loadgen (or another of the C programs here) unless the
    binary is newer than its source and the header they share. The binary
    is written under a temporary name and renamed, so that two runs at once
    never see half a file.
    """
    sources = [source, BENCH / "benchlib.h"]
    newest = max(path.stat().st_mtime for path in sources)
    if binary.exists() and binary.stat().st_mtime >= newest:
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f".{binary.name}-{os.getpid()}")
    flags = ["-O2", "-Wall", "-Wextra"]
    subprocess.run(
        ["gcc", *flags, "-o", str(partial), str(source), "-lm"],
        check=True,
        timeout=120,
    )
    partial.replace(binary)
    return binary


_peer_setup: list[Path | str] = []  # the outcome of the first setup, once tried


def peer_python() -> Path:
    """
    Make C{bench/.venv} with the peers' packages, unless it has them already.
    Only the first call tries; later ones repeat its outcome.

    @return: The virtualenv's python.
    @raise BenchError: If it could not be set up.
    """
    if not _peer_setup:
        try:
            _peer_setup.append(_make_peer_venv())
        except (OSError, subprocess.SubprocessError) as e:
            _peer_setup.append(f"cannot set up {PEER_VENV}: {e}")
    outcome = _peer_setup[0]
    if isinstance(outcome, str):
        raise BenchError(outcome)
    return outcome


def _make_peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    wanted = " ".join(PEER_PACKAGES)
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"Setting up {PEER_VENV} with {wanted}", flush=True)
    if not python.exists():
        subprocess.run(
            [sys.executable, "-m", "venv", str(PEER_VENV)], check=True, timeout=300
        )
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
        check=True,
        timeout=900,
    )
    stamp.write_text(wanted)
    return python


# The servers.


def server_command(name: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """
    @param extra: More arguments for ssedemo, such as C{--redis}.
    @return: The command that runs server C{name} on 127.0.0.1:C{port}.
    """
    if (
        name in ("ssedemo", "ssedemo-python")
        or name in REDIS_SERVERS
        or name in JWT_SERVERS
    ):
        twistd = str(Path(sys.executable).with_name("twistd"))
        where = f"tcp:{port}:interface=127.0.0.1"
        command = [twistd, "-n", "ssedemo", "--port", where, "--heartbeat", "0"]
        if name in WORKERS:
            command += ["--workers", str(WORKERS[name])]
        if name in JWT_SERVERS:
            command += ["--jwt-key", JWT_KEY, "--jwt-algorithm", JWT_SERVERS[name]]
        command = [*command, *extra]
        if name == "ssedemo-python":  # env execs twistd: the same process
            command = ["env", "SSEDEMO_PURE_PYTHON=1", *command]
        return command
    if name == "c-epoll":
        return [str(CSERVER), str(port)]
    if name == "ssedemo-metrics":  # the same, with Prometheus metrics served
        metrics = f"tcp:{free_port()}:interface=127.0.0.1"
        return [*server_command("ssedemo", port), "--metrics", metrics]
    if name in PYTHON_PEERS:
        return [str(peer_python()), str(PEERS / f"{name}_peer.py"), str(port)]
    if name == "node":
        return ["node", str(PEERS / "node_peer.js"), str(port)]
    raise ValueError(name)


# ssedemo with JWT authorization: every stream presents a token for the
# default topic in its query, as EventSource does across origins.
JWT_SERVERS = {"ssedemo-hs256": "HS256", "ssedemo-es256": "ES256"}
JWT_KEY = "jwt.key"  # in the server's working directory


def stream_path(name: str, workdir: Path) -> str:
    """
    For a JWT variant, write a fresh key into C{workdir} (where the server
    runs) and sign a token that lets streams read the default topic.

    @return: The path the loadgen's streams ask for.
    """
    algorithm = JWT_SERVERS.get(name)
    if algorithm is None:
        return "/sse"
    # Imported here: only the JWT variants need the project's virtualenv.
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    signing: Any
    if algorithm == "HS256":
        signing = os.urandom(32).hex()
        (workdir / JWT_KEY).write_text(signing + "\n")
    else:
        signing = ec.generate_private_key(ec.SECP256R1())
        (workdir / JWT_KEY).write_bytes(
            signing.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
    claims = {"sse": {"subscribe": ["default"]}, "exp": int(time.time()) + 3600}
    return "/sse?access_token=" + jwt.encode(claims, signing, algorithm=algorithm)


def tail(path: Path, lines: int = 5) -> str:
    """
    @return: The last lines of a log file, for an error message.
    """
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return " | ".join(text.splitlines()[-lines:])


def wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """
    Wait until C{process} accepts connections on C{port}, or fail.
    """
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(
                f"server exited with status {process.returncode}: {tail(log)}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"server did not listen within {START_DEADLINE:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> str | None:
    """
    Stop a process with SIGTERM, then SIGKILL if it lingers.

    @return: A note if it had to be killed.
    """
    if process.poll() is not None:
        return None
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_DEADLINE)
        return None
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_DEADLINE)
        return f"killed: still running {STOP_DEADLINE:.0f} s after SIGTERM"


def wait_workers(log: Path, count: int) -> None:
    """
    Wait until C{count} workers of C{ssedemo --workers} serve: the parent's
    socket takes connections before they do.
    """
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if log.read_bytes().count(b"Site starting on") >= count:
            return
        time.sleep(0.05)
    raise BenchError(f"{count} workers did not start within {START_DEADLINE:.0f} s")


@contextmanager
def backing_redis(name: str) -> Iterator[tuple[list[str], list[int]]]:
    """
    Run a redis-server of its own (persistence off) for server C{name} if it
    needs one, for the duration of the block.

    @return: The arguments that point ssedemo to it, and its process id (so
        that its CPU time counts as the server's); nothing for other servers.
    """
    if name not in REDIS_SERVERS:
        yield [], []
        return
    replicas = REPLICATED.get(name, 0)
    with running_redis() as redis, ExitStack() as stack:
        assert redis.process is not None
        pids = [redis.process.pid]
        for _ in range(replicas):
            replica = stack.enter_context(
                running_redis(args=["--replicaof", "127.0.0.1", str(redis.port)])
            )
            assert replica.process is not None
            pids.append(replica.process.pid)
        if replicas:
            wait_replicas(redis, replicas)
        extra = ["--redis", redis.url]
        if replicas:
            extra += ["--redis-replicas", str(replicas)]
        yield extra, pids


def wait_replicas(redis: RedisServer, count: int) -> None:
    """
    Wait until C{count} replicas are attached to C{redis} and in sync.
    """
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        info = redis.cli("INFO", "replication")
        if info.count("state=online") >= count:
            return
        time.sleep(0.05)
    raise BenchError(f"{count} Redis replicas did not attach in {START_DEADLINE:.0f} s")


@contextmanager
def running(
    name: str,
    workdir: Path,
    command: Callable[[int], list[str]] | None = None,
    extra: Sequence[str] = (),
) -> Iterator[tuple[int, int]]:
    """
    Run server C{name} for the duration of the block, its output going to
    a log file in C{workdir}.

    @param command: Makes the command for a port, if not L{server_command}'s.
    @param extra: More arguments for ssedemo.
    @return: Its port and its process id.
    """
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command(port) if command else server_command(name, port, extra),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(process, port, log)
        if name in WORKERS:
            wait_workers(log, WORKERS[name])
        yield port, process.pid
    finally:
        note = stop(process)
        if note:
            print(f"  {name}: {note}", file=sys.stderr)


def ssedemo_revision() -> str:
    """
    @return: The commit of the ssedemo code that C{twistd} runs (the work
        tree, installed in editable mode), marked if that code has changes
        not yet committed.
    """
    paths = ["sse_twisted", "twisted", "setup.py"]
    # No optional locks: reading must not write the index of a shared tree.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head, changes = (
            subprocess.run(
                ["git", *command],
                cwd=BENCH.parent,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.strip()
            for command in (
                ["rev-parse", "--short", "HEAD"],
                ["status", "--porcelain", "--", *paths],
            )
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + uncommitted changes" if changes else "")


# What /proc says about the server and the machine.

TICK = os.sysconf("SC_CLK_TCK")


def process_sample(pid: int) -> dict[str, float]:
    """
    @return: The CPU time used so far by process C{pid}, and its memory.
        C{cpu_s} is the sum over its threads of the scheduler's nanosecond
        clock (if the kernel keeps none, C{user_s + sys_s}); C{user_s} and
        C{sys_s} come from C{/proc/PID/stat} in whole clock ticks (10 ms).
    """
    # The command name may hold spaces: the fields start after its ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    user, system = int(fields[11]) / TICK, int(fields[12]) / TICK
    precise, found = 0, False
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            precise += int((task / "schedstat").read_text().split()[0])
            found = True
        except (OSError, IndexError, ValueError):
            pass  # a thread that just ended, or no schedstat
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return {
        "cpu_s": precise / 1e9 if found else user + system,
        "user_s": user,
        "sys_s": system,
        "rss_kb": rss,
    }


def kernel_counters(path: str, section: str) -> dict[str, int]:
    """
    @return: One section of C{/proc/net/netstat} or C{/proc/net/snmp}, where
        a line of names is followed by a line of values.
    """
    rows = [
        line.split()[1:]
        for line in Path(path).read_text().splitlines()
        if line.startswith(section + ":")
    ]
    return {name: int(value) for name, value in zip(*rows[:2], strict=False)}


def machine_sample() -> dict[str, float]:
    """
    @return: The machine's busy CPU seconds (all cores), and its counters of
        dropped connection attempts and retransmitted TCP segments.
    """
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    # user nice system idle iowait irq softirq steal ...: all but idle, iowait
    busy = sum(cpu[:8]) - cpu[3] - cpu[4]
    return {
        "time": time.monotonic(),
        "busy_s": busy / TICK,
        "listen_drops": kernel_counters("/proc/net/netstat", "TcpExt")["ListenDrops"],
        "retransmits": kernel_counters("/proc/net/snmp", "Tcp")["RetransSegs"],
    }


def process_tree(roots: Sequence[int]) -> list[int]:
    """
    @return: The processes C{roots} and all their descendants.
    """
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
                parents[int(entry.name)] = int(stat[1])
            except (OSError, IndexError, ValueError):
                pass  # a process that just ended
    tree = list(roots)
    for pid in tree:  # grows while children are found
        tree += [child for child, parent in parents.items() if parent == pid]
    return tree


def sample(pids: Sequence[int]) -> dict[str, float]:
    """
    @return: What L{process_sample} says now, summed over the server's
        processes C{pids} and their descendants (the workers of ssedemo
        --workers), and what L{machine_sample} says.
    """
    try:
        processes = [process_sample(pid) for pid in process_tree(pids)]
        total = {key: sum(p[key] for p in processes) for key in processes[0]}
        return total | {"processes": len(processes)} | machine_sample()
    except (OSError, ValueError, IndexError, KeyError) as e:
        raise BenchError(f"cannot read /proc: {e}") from None


# The loadgen.


class Lines:
    """
    The lines a process writes to a pipe, read by a thread, so that each
    wait for one has a deadline.
    """

    def __init__(self, pipe: IO[bytes]) -> None:
        self._queue: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: IO[bytes]) -> None:
        for line in pipe:
            self._queue.put(line)
        self._queue.put(b"")  # end of file

    def expect(self, prefix: str, seconds: float) -> str:
        """
        @return: The next line that starts with C{prefix}.
        @raise BenchError: At end of file or after C{seconds}.
        """
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"loadgen: no {prefix!r} in {seconds:.0f} s") from None
            if not line:
                raise BenchError(f"loadgen ended before {prefix!r}")
            if line.decode(errors="replace").startswith(prefix):
                return line.decode().strip()


def run_loadgen(
    port: int,
    options: argparse.Namespace,
    workdir: Path,
    on_phase: Callable[[str], None],
    path: str = "/sse",
    name: str = "",
) -> dict[str, Any]:
    """
    Run the loadgen against C{port}, calling C{on_phase("ready")} when its
    streams are open and C{on_phase("done")} when its rounds are over; its
    streams ask for C{path}. Server C{name}'s publish latency is timed if
    it is one of L{PUBLISHERS}.

    @return: Its JSON report.
    """
    command = [str(LOADGEN), "--port", str(port)]
    command += ["--clients", str(options.clients), "--rounds", str(options.rounds)]
    command += ["--connect-timeout", str(CONNECT_TIMEOUT)]
    command += ["--round-timeout", str(ROUND_TIMEOUT)]
    command += ["--path", path]
    if name in PUBLISHERS:
        command += ["--publishes", str(PUBLISHES)]
    rounds_limit = options.rounds * (ROUND_TIMEOUT + 1) + SLACK
    return drive_loadgen(
        command,
        [("READY", CONNECT_TIMEOUT + SLACK), ("DONE", rounds_limit)],
        workdir,
        lambda line: on_phase(line.split()[0].lower()),
    )


def drive_loadgen(
    command: list[str],
    phases: Sequence[tuple[str, float]],
    workdir: Path,
    on_phase: Callable[[str], None],
) -> dict[str, Any]:
    """
    Run the loadgen with C{command}. For each of its C{phases} (the prefix
    of the line it prints, and how long it may take), call C{on_phase} with
    that line, then tell the loadgen to go on.

    @return: Its JSON report.
    """
    errors = workdir / "loadgen.stderr"
    with errors.open("wb") as err:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
        )
    assert process.stdin is not None and process.stdout is not None
    lines = Lines(process.stdout)
    try:
        for phase, limit in phases:
            on_phase(lines.expect(phase, limit))
            process.stdin.write(b"\n")  # go on
            process.stdin.flush()
        report: dict[str, Any] = json.loads(lines.expect("{", SLACK))
        process.wait(timeout=SLACK)
        return report
    except (BenchError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        raise BenchError(f"{e} {tail(errors)}".strip()) from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=SLACK)


def run_once(name: str, options: argparse.Namespace) -> dict[str, Any]:
    """
    Benchmark server C{name} once.

    @return: The loadgen's report and the server-side figures, or the error.
    """
    record: dict[str, Any] = {"server": name, "error": None}
    if name.startswith("ssedemo"):
        record["revision"] = ssedemo_revision()
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        workdir = Path(tmp)
        try:
            path = stream_path(name, workdir)
            with (
                backing_redis(name) as (extra, helpers),
                running(name, workdir, extra=extra) as (port, pid),
            ):
                time.sleep(SETTLE)
                pids = [pid, *helpers]
                samples = {"start": sample(pids)}

                def on_phase(phase: str) -> None:
                    samples[phase] = sample(pids)

                report = run_loadgen(port, options, workdir, on_phase, path, name)
            record["loadgen"] = report
            record["samples"] = samples
            record.update(server_figures(report, samples))
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            record["error"] = str(e)
    return record


def server_figures(
    report: dict[str, Any], samples: dict[str, dict[str, float]]
) -> dict[str, float | None]:
    """
    The server's figures from the samples taken before the streams were
    opened (C{start}), once they were (C{ready}), and after the rounds
    (C{done}).
    """
    start, ready, done = samples["start"], samples["ready"], samples["done"]
    deliveries = report["deliveries"]
    reached = report["reached"]

    def per(value: float, count: int, scale: float = 1e6) -> float | None:
        return value * scale / count if count else None

    def rounds(key: str) -> float:
        return done[key] - ready[key]

    # Whatever else kept the machine busy during the rounds, in percent of
    # all its cores: nonzero means the figures were disturbed.
    others = rounds("busy_s") - rounds("cpu_s") - report["loadgen_cpu_s"]
    cores = os.cpu_count() or 1
    return {
        "server_cpu_us_per_delivery": per(rounds("cpu_s"), deliveries),
        "server_user_us_per_delivery": per(rounds("user_s"), deliveries),
        "server_sys_us_per_delivery": per(rounds("sys_s"), deliveries),
        "server_cpu_us_per_connect": per(ready["cpu_s"] - start["cpu_s"], reached),
        "rss_kb_per_conn": per(ready["rss_kb"] - start["rss_kb"], reached, 1),
        "listen_drops": ready["listen_drops"] - start["listen_drops"],
        "retransmits": done["retransmits"] - start["retransmits"],
        "other_load_pct": 100 * max(0.0, others) / (rounds("time") * cores),
    }


# The summary.


def median(
    records: Sequence[dict[str, Any]], get: Callable[[dict[str, Any]], Any]
) -> Any:
    """
    @return: The median of C{get(record)} over the records that have it.
    """
    values = []
    for record in records:
        try:
            value = get(record)
        except (KeyError, TypeError):
            continue
        if value is not None:
            values.append(value)
    return statistics.median(values) if values else None


# Each column of the summary: its name, and how to read it from one record.
COLUMNS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "connections": lambda r: r["loadgen"]["reached"],
    "connect_rate": lambda r: r["loadgen"]["connect_rate"],
    "connect_ms_p99": lambda r: r["loadgen"]["connect_ms_p99"],
    "fanout_ms_p50": lambda r: r["loadgen"]["fanout_ms_p50"],
    "fanout_ms_p99": lambda r: r["loadgen"]["fanout_ms_p99"],
    "delivery_ms_p50": lambda r: r["loadgen"]["delivery_ms_p50"],
    "delivery_ms_p99": lambda r: r["loadgen"]["delivery_ms_p99"],
    "deliveries": lambda r: r["loadgen"]["deliveries"],
    # Copies per second while a median round fans out.
    "deliveries_per_s": lambda r: (
        r["loadgen"]["reached"] * 1e3 / r["loadgen"]["fanout_ms_p50"]
    ),
    "server_cpu_us_per_delivery": lambda r: r["server_cpu_us_per_delivery"],
    "server_user_us_per_delivery": lambda r: r["server_user_us_per_delivery"],
    "server_sys_us_per_delivery": lambda r: r["server_sys_us_per_delivery"],
    "listen_drops": lambda r: r["listen_drops"],
    "retransmits": lambda r: r["retransmits"],
    "other_load_pct": lambda r: r["other_load_pct"],
    "server_cpu_us_per_connect": lambda r: r["server_cpu_us_per_connect"],
    "rss_kb_per_conn": lambda r: r["rss_kb_per_conn"],
    "loadgen_cpu_us_per_delivery": lambda r: r["loadgen"][
        "loadgen_cpu_us_per_delivery"
    ],
    "publish_ms_p50": lambda r: r["loadgen"]["publish_ms_p50"],
    "publish_ms_p99": lambda r: r["loadgen"]["publish_ms_p99"],
}


def summarize(
    records: Sequence[dict[str, Any]], servers: Sequence[str]
) -> dict[str, Any]:
    """
    @return: For each server, the medians across repetitions, the errors
        summed over them, and the number of runs that failed outright.
    """
    summary = {}
    for name in servers:
        mine = [r for r in records if r["server"] == name]
        done = [r for r in mine if r["error"] is None]
        row = {column: median(done, get) for column, get in COLUMNS.items()}
        row["errors"] = sum(r["loadgen"]["error_total"] for r in done)
        row["runs"] = len(mine)
        row["failed_runs"] = len(mine) - len(done)
        summary[name] = row
    return summary


def versions(servers: Sequence[str]) -> dict[str, str]:
    """
    @return: The versions of what was measured, and of the machine.
    """
    found = {
        "python": platform.python_version(),
        "twisted": metadata.version("twisted"),
        "klein": metadata.version("klein"),
        "kernel": platform.release(),
        "cpus": f"{os.cpu_count()} x {cpu_model()}",
    }
    tools = {"gcc": ["gcc", "-dumpfullversion"]}
    if REDIS_SERVERS & set(servers):
        tools["redis"] = [REDIS_SERVER, "--version"]
    if "node" in servers:
        tools["node"] = ["node", "--version"]
    for name, command in tools.items():
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=30)
            found[name] = out.stdout.strip()
        except OSError:
            found[name] = "missing"
    if PYTHON_PEERS & set(servers):
        script = (
            "import json, platform; from importlib.metadata import version;"
            f"names = {list(PEER_VERSIONS)!r};"
            "v = {n: version(n) for n in names};"
            "v['peers python'] = platform.python_version(); print(json.dumps(v))"
        )
        try:
            out = subprocess.run(
                [str(peer_python()), "-c", script],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            found.update(json.loads(out.stdout))
        except (BenchError, OSError, subprocess.SubprocessError, ValueError) as e:
            found["peers"] = f"unknown ({e})"
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def number(value: float | None, digits: int = 1) -> str:
    """
    @return: C{value} for a table cell.
    """
    if value is None:
        return "—"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio(mine: float | None, theirs: float | None) -> str:
    return f"{mine / theirs:.2f}x" if mine is not None and theirs else "—"


def markdown(result: dict[str, Any]) -> str:
    """
    @return: The results as a Markdown page.
    """
    opts = result["options"]
    summary = result["summary"]
    what = (
        f"{opts['clients']:,} streams, {opts['rounds']} broadcast"
        f" rounds, {opts['repeat']} repetitions; medians across repetitions"
        " (errors: total over them)"
        if summary
        else ", ".join(opts["scenarios"])
    )
    lines = [
        "# ssedemo load benchmark",
        "",
        f"{result['date']}: {what}. Command:",
        "",
        f"    {result['command']}",
    ]
    if summary:
        lines += broadcast(result)
    lines += ["", "## Versions", ""]
    revisions: dict[str, list[str]] = {}
    for r in result["runs"]:
        if "revision" in r:
            revisions.setdefault(r["revision"], []).append(str(r["repeat"]))
    if len(revisions) > 1:
        lines.append(
            "- ssedemo: **its code changed during the benchmark**, so the"
            " medians mix versions: "
            + "; ".join(
                f"{rev} (repetition {', '.join(reps)})"
                for rev, reps in revisions.items()
            )
        )
    elif revisions:
        lines.append(f"- ssedemo: {next(iter(revisions))}")
    lines += [f"- {name}: {value}" for name, value in result["versions"].items()]
    return "\n".join(lines) + "\n"


def broadcast(result: dict[str, Any]) -> list[str]:
    """
    @return: The broadcast run's tables.
    """
    summary = result["summary"]
    lines = [
        "",
        "| server | connections | connects/s | fan-out p50 ms | fan-out p99 ms"
        " | deliveries/s | delivery p50 ms | delivery p99 ms"
        " | server CPU µs/delivery | RSS KB/conn | errors"
        " | loadgen CPU µs/delivery |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, row in summary.items():
        errors = str(row["errors"])
        if row["failed_runs"]:
            errors += f" + {row['failed_runs']}/{row['runs']} runs failed"
        cells = [
            name,
            number(row["connections"], 0),
            number(row["connect_rate"], 0),
            number(row["fanout_ms_p50"]),
            number(row["fanout_ms_p99"]),
            number(row["deliveries_per_s"], 0),
            number(row["delivery_ms_p50"]),
            number(row["delivery_ms_p99"]),
            number(row["server_cpu_us_per_delivery"], 2),
            number(row["rss_kb_per_conn"]),
            errors,
            number(row["loadgen_cpu_us_per_delivery"], 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Fan-out: from the POST to the last stream's copy, per round;"
        " deliveries/s: streams / median fan-out. Delivery:"
        " from the POST to each stream's copy. Server CPU counts the broadcast"
        " rounds only (the scheduler's per-thread nanosecond clock), summed"
        " over all of the server's processes (with Redis: redis-server too).",
    ]
    lines += variants(summary)
    peers = [name for name in summary if not name.startswith("ssedemo")]
    if "ssedemo" in summary and peers:
        mine = summary["ssedemo"]
        lines += [
            "",
            "## ssedemo / peer",
            "",
            "Below 1 is better for ssedemo in the first three columns;"
            " above 1 in the last.",
            "",
            "| peer | server CPU µs/delivery | fan-out p99 | RSS KB/conn"
            " | connects/s |",
            "|---|--:|--:|--:|--:|",
        ]
        columns = (
            "server_cpu_us_per_delivery",
            "fanout_ms_p99",
            "rss_kb_per_conn",
            "connect_rate",
        )
        for name in peers:
            lines.append(ratio_row(name, mine, summary[name], columns))
    lines += [
        "",
        "## Details",
        "",
        "User and system CPU per delivery come from /proc/PID/stat (10 ms"
        " ticks); the system part includes the loopback TCP receive path, run"
        " in the sender's send(). Listen drops: connection attempts the kernel"
        " dropped while the streams opened (each costs a client a 1 s SYN"
        " retry). Other load: CPU used by anything but the server and the"
        " loadgen during the rounds, in % of all cores.",
        "",
        "| server | connect p99 ms | server CPU µs/connect"
        " | user µs/delivery | system µs/delivery | listen drops"
        " | retransmits | other load % | deliveries | publish p50 / p99 ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, row in summary.items():
        cells = [
            name,
            number(row["connect_ms_p99"]),
            number(row["server_cpu_us_per_connect"]),
            number(row["server_user_us_per_delivery"], 2),
            number(row["server_sys_us_per_delivery"], 2),
            number(row["listen_drops"], 0),
            number(row["retransmits"], 0),
            number(row["other_load_pct"]),
            number(row["deliveries"], 0),
            f"{number(row['publish_ms_p50'], 2)} / {number(row['publish_ms_p99'], 2)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += replicated(summary)
    problems = [
        f"- {r['server']}, repetition {r['repeat']}: {problem(r)}"
        for r in result["runs"]
        if problem(r)
    ]
    if problems:
        lines += ["", "## Failed runs and errors", "", *problems]
    return lines


def replicated(summary: dict[str, Any]) -> list[str]:
    """
    @return: The lines comparing ssedemo on a replicated Redis
        (C{--redis-replicas}) with plain C{--redis}, if both were measured.
    """
    names = [name for name in REPLICATED if name in summary]
    if "ssedemo-redis" not in summary or not names:
        return []
    plain = summary["ssedemo-redis"]
    lines = [
        "",
        "## Replicated Redis",
        "",
        "`--redis --redis-replicas N` on a local redis-server with N replicas"
        " (`redis-server --replicaof`), against plain `--redis`. Publish"
        f" latency: {PUBLISHES} `POST /publish` one after the other once the"
        " rounds are over, to a topic no stream reads (so it is the store"
        " and, with replicas, Redis's `WAIT`), until the answer's status"
        " line. Server CPU counts the master's and the replicas' too.",
        "",
        "| server | publish p50 ms | publish p99 ms | connects/s"
        " | server CPU µs/delivery | CPU ratio | connects/s ratio |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name in ["ssedemo-redis", *names]:
        row = summary[name]
        cells = [
            name,
            number(row["publish_ms_p50"], 2),
            number(row["publish_ms_p99"], 2),
            number(row["connect_rate"], 0),
            number(row["server_cpu_us_per_delivery"], 2),
            ratio(
                row["server_cpu_us_per_delivery"], plain["server_cpu_us_per_delivery"]
            ),
            ratio(row["connect_rate"], plain["connect_rate"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def variants(summary: dict[str, Any]) -> list[str]:
    """
    @return: The lines comparing ssedemo's variants (C{ssedemo-...}) with
        plain C{ssedemo}, if both were measured.
    """
    names = [name for name in summary if name.startswith("ssedemo-")]
    if "ssedemo" not in summary or not names:
        return []
    lines = [
        "",
        "## ssedemo variant / ssedemo",
        "",
        "| variant | deliveries/s | server CPU µs/delivery | fan-out p99"
        " | connects/s |",
        "|---|--:|--:|--:|--:|",
    ]
    columns = (
        "deliveries_per_s",
        "server_cpu_us_per_delivery",
        "fanout_ms_p99",
        "connect_rate",
    )
    for name in names:
        lines.append(ratio_row(name, summary[name], summary["ssedemo"], columns))
    return lines


def ratio_row(
    name: str,
    numerator: dict[str, Any],
    denominator: dict[str, Any],
    columns: Sequence[str],
) -> str:
    """
    @return: A table row: C{name}, then C{numerator / denominator} for each
        of the C{columns}.
    """
    cells = [ratio(numerator[c], denominator[c]) for c in columns]
    return "| " + " | ".join([name, *cells]) + " |"


def problem(record: dict[str, Any]) -> str:
    """
    @return: What went wrong in one run, if anything.
    """
    if record["error"]:
        return str(record["error"])
    counts = record["loadgen"]["errors"]
    return ", ".join(f"{kind} {n}" for kind, n in counts.items() if n)


def progress(record: dict[str, Any]) -> str:
    """
    @return: A few figures of one run, to show while the benchmark goes on.
    """
    report = record["loadgen"]
    cpu = record["server_cpu_us_per_delivery"]
    return (
        f"{report['reached']} streams, {report['deliveries']} deliveries,"
        f" {report['error_total']} errors, server CPU {number(cpu, 2)} µs/delivery"
    )


def command_line(argv: Sequence[str] | None) -> str:
    """
    @return: This run's command line, with paths relative to the current
        directory where they can be.
    """

    def short(path: str) -> str:
        relative = os.path.relpath(path)
        return path if relative.startswith("..") else relative

    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join([short(sys.executable), short(__file__), *args])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--clients", type=int, default=10000, help="streams (10000)")
    parser.add_argument("--rounds", type=int, default=20, help="broadcasts (20)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (3)")
    parser.add_argument(
        "--servers",
        nargs="+",
        default=list(SERVERS),
        help=f"servers to measure, by name or comma-separated ({' '.join(SERVERS)})",
    )
    parser.add_argument(
        "--json", type=Path, help="raw results file (default: bench/results/raw/)"
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=BENCH / "RESULTS.md",
        help="the table's file (bench/RESULTS.md)",
    )
    parser.add_argument(
        "--churn-waves",
        type=int,
        default=10,
        help="waves of the churn run against ssedemo (10; 0: no churn run)",
    )
    parser.add_argument(
        "--churn-clients", type=int, default=5000, help="streams per wave (5000)"
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=list(SCENARIOS),
        help=f"what to run, by name or comma-separated ({' '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--storm-clients", type=int, default=10000, help="restart storm streams"
    )
    parser.add_argument(
        "--storm-variants",
        nargs="+",
        default=["redis", "memory", "workers2"],
        help="restart storm logs (redis memory workers2)",
    )
    parser.add_argument(
        "--ticker-streams", type=int, default=1000, help="ticker: fast streams"
    )
    parser.add_argument("--ticker-slow", type=int, default=100, help="slow streams")
    parser.add_argument("--ticker-keys", type=int, default=1000, help="keys (1000)")
    parser.add_argument(
        "--ticker-rate", type=int, default=200, help="keyed events per second"
    )
    parser.add_argument(
        "--ticker-seconds", type=int, default=40, help="seconds of publishing (40)"
    )
    parser.add_argument(
        "--ticker-pad",
        type=int,
        default=1024,
        help="ticker: filler bytes in each event's data (1024), so that slow"
        " streams fall behind the socket buffers and conflation starts",
    )
    parser.add_argument("--ticker-topic", default="ticker", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    options.scenarios = [s for arg in options.scenarios for s in arg.split(",") if s]
    options.storm_variants = [
        v for arg in options.storm_variants for v in arg.split(",") if v
    ]
    if set(options.scenarios) - set(SCENARIOS):
        parser.error(f"--scenarios: choose from {SCENARIOS}")
    if set(options.storm_variants) - {"redis", "memory", "workers2"}:
        parser.error("--storm-variants: choose from redis memory workers2")
    if not 1 <= options.storm_clients <= 19000:
        parser.error("--storm-clients must be between 1 and 19000")
    if not (
        1 <= options.ticker_streams <= 19000
        and 0 <= options.ticker_slow <= 19000
        and 1 <= options.ticker_keys <= 100000
        and 1 <= options.ticker_rate <= 10000
        and 1 <= options.ticker_seconds <= 3600
        and options.ticker_rate * options.ticker_seconds <= 100000
    ):
        parser.error("a --ticker-* option is out of range")
    options.servers = [s for arg in options.servers for s in arg.split(",") if s]
    unknown = set(options.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers {sorted(unknown)}; choose from {SERVERS}")
    if not 1 <= options.clients <= 19000:
        parser.error("--clients must be between 1 and 19000")
    if not 1 <= options.rounds <= 1000 or not 1 <= options.repeat <= 100:
        parser.error("--rounds must be 1 to 1000, --repeat 1 to 100")
    if not 0 <= options.churn_waves <= 100 or not 1 <= options.churn_clients <= 19000:
        parser.error("--churn-waves must be 0 to 100, --churn-clients 1 to 19000")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    began = time.monotonic()
    build_loadgen()
    if "c-epoll" in options.servers:
        build_loadgen(CSERVER_SOURCE, CSERVER)
    if PYTHON_PEERS & set(options.servers):
        try:
            peer_python()  # now, rather than in the first peer's run
        except BenchError as e:
            print(f"{e}: the Python peers' runs will fail", file=sys.stderr)
    records = []
    if "broadcast" not in options.scenarios:
        options.servers = []
    for repeat in range(1, options.repeat + 1):
        for name in options.servers:
            if records:
                time.sleep(PAUSE)
            print(f"repetition {repeat}/{options.repeat}: {name}", flush=True)
            record = run_once(name, options)
            record["repeat"] = repeat
            records.append(record)
            print(f"  {record['error'] or progress(record)}", flush=True)
    churned = stormed = tickers = None
    if options.churn_waves and "churn" in options.scenarios:
        import churn  # it uses this module's helpers

        print(f"churn: {options.churn_waves} waves on ssedemo", flush=True)
        churned = churn.run_churn(options)
        print(f"  {churned['error'] or churn.summary(churned)}", flush=True)
    if "storm" in options.scenarios:
        import storm

        stormed = storm.run_storm(options)
    if "ticker" in options.scenarios:
        import ticker

        tickers = ticker.run_ticker(options)
    result = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(argv),
        "options": {
            "clients": options.clients,
            "rounds": options.rounds,
            "repeat": options.repeat,
            "servers": options.servers,
            "churn_waves": options.churn_waves,
            "churn_clients": options.churn_clients,
            "scenarios": options.scenarios,
            "storm_clients": options.storm_clients,
            "storm_variants": options.storm_variants,
            "ticker": {
                "streams": options.ticker_streams,
                "slow": options.ticker_slow,
                "keys": options.ticker_keys,
                "rate": options.ticker_rate,
                "seconds": options.ticker_seconds,
            },
        },
        "versions": versions(
            [*options.servers, *(["ssedemo-redis"] if stormed else [])]
        ),
        "seconds": round(time.monotonic() - began, 1),
        "summary": summarize(records, options.servers),
        "runs": records,
        "churn": churned,
        "storm": stormed,
        "ticker": tickers,
    }
    raw = options.json or BENCH / "results" / "raw" / (
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json"
    )
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(result, indent=2) + "\n")
    page = markdown(result)
    if churned:
        page += "\n".join(churn.markdown(churned, options)) + "\n"
    if stormed:
        page += "\n".join(storm.markdown(stormed, options)) + "\n"
    if tickers:
        page += "\n".join(ticker.markdown(tickers, options)) + "\n"
    options.markdown.write_text(page)
    print(page)
    print(f"Raw results: {raw}; table: {options.markdown}; {result['seconds']} s")
    # Failed runs are reported in the table, not by the exit status.
    return 0


if __name__ == "__main__":
    sys.exit(main())
