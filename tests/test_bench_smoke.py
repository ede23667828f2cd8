"""
The load benchmark, run small against ssedemo alone: it builds, it runs, and
its figures add up. The peers (and their virtualenv) are not involved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def small_bench(tmp_path: Path, servers: list[str], churn: list[str]) -> dict[str, Any]:
    """
    Run the benchmark with 50 streams and 3 rounds against C{servers}; check
    that every stream got every event, without errors, and that each
    server's CPU time over the rounds was measured.

    @return: The raw results, with the Markdown table under C{"table"}.
    """
    results = tmp_path / "results.json"
    table = tmp_path / "RESULTS.md"
    workload = ["--clients", "50", "--rounds", "3", "--repeat", "1", *churn]
    workload += ["--scenarios", "broadcast,churn"]
    outputs = ["--json", str(results), "--markdown", str(table)]
    done = subprocess.run(
        [
            sys.executable,
            str(RUN),
            *workload,
            "--servers",
            ",".join(servers),
            *outputs,
        ],
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(results.read_text())
    assert [run["error"] for run in report["runs"]] == [None] * len(servers)
    report["table"] = table.read_text()
    for name in servers:
        summary = report["summary"][name]
        assert summary["connections"] == 50
        assert summary["errors"] == 0
        assert summary["failed_runs"] == 0
        assert summary["deliveries"] == 150
        assert summary["server_cpu_us_per_delivery"] > 0
        assert f"| {name} | 50 |" in report["table"]
    # Counted: the server, its workers (ssedemo --workers) and redis-server.
    for run in report["runs"]:
        expected = {
            "ssedemo-redis": 2,
            "ssedemo-redis-replica": 3,
            "ssedemo-workers2": 4,
        }.get(run["server"], 1)
        assert run["samples"]["done"]["processes"] == expected
    return report


def test_bench_smoke(tmp_path: Path) -> None:
    """
    The delivery run with and without metrics, then 3 waves of 20 streams
    opened and closed: each wave is measured once the server has seen its
    streams close, and none of their streams is alive any more.
    """
    report = small_bench(
        tmp_path,
        ["ssedemo", "ssedemo-metrics"],
        ["--churn-waves", "3", "--churn-clients", "20"],
    )
    churn = report["churn"]
    assert churn["error"] is None
    assert [wave["reached"] for wave in churn["waves"]] == [20, 20, 20]
    assert churn["loadgen"]["error_total"] == 0
    assert all(wave["rss_kb"] > 0 for wave in churn["waves"])
    assert all(wave["census"]["objects"] > 0 for wave in churn["waves"])
    # Closed streams are freed at once, not at the next full collection.
    assert churn["waves"][-1]["census"]["instances"]["EventStream"] == 0
    assert "## Connection churn" in report["table"]


def test_bench_smoke_with_redis(tmp_path: Path) -> None:
    """
    ssedemo-redis runs on a redis-server of its own, started and stopped by
    the run, and delivers every event.
    """
    report = small_bench(tmp_path, ["ssedemo-redis"], ["--churn-waves", "0"])
    assert "redis" in report["versions"]


def test_bench_smoke_with_workers(tmp_path: Path) -> None:
    """
    ssedemo-workers2 (two workers on Redis) delivers every event; its CPU
    time is counted over the parent, both workers and redis-server.
    """
    report = small_bench(tmp_path, ["ssedemo-workers2"], ["--churn-waves", "0"])
    assert "redis" in report["versions"]


def test_bench_smoke_fanouts(tmp_path: Path) -> None:
    """
    ssedemo without its compiled fan-out, and the C floor (c-epoll, built by
    the run), deliver every event too.
    """
    small_bench(tmp_path, ["ssedemo-python", "c-epoll"], ["--churn-waves", "0"])


def test_bench_smoke_replica(tmp_path: Path) -> None:
    """
    ssedemo-redis-replica (--redis-replicas 1 on a master with one replica)
    delivers every event, its CPU time counts both redis-servers, and its
    publish latency is compared with plain --redis.
    """
    report = small_bench(
        tmp_path, ["ssedemo-redis", "ssedemo-redis-replica"], ["--churn-waves", "0"]
    )
    for name in ("ssedemo-redis", "ssedemo-redis-replica"):
        assert report["summary"][name]["publish_ms_p50"] > 0
        assert report["summary"][name]["publish_ms_p99"] > 0
    assert "## Replicated Redis" in report["table"]


def scenario(tmp_path: Path, arguments: list[str]) -> dict[str, Any]:
    """
    Run one scenario of the benchmark alone (as C{make bench BENCH_ARGS=...}).

    @return: The raw results, with the Markdown page under C{"table"}.
    """
    results, table = tmp_path / "results.json", tmp_path / "RESULTS.md"
    outputs = ["--json", str(results), "--markdown", str(table)]
    done = subprocess.run(
        [sys.executable, str(RUN), *arguments, *outputs],
        timeout=240,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(results.read_text())
    report["table"] = table.read_text()
    assert report["runs"] == []  # no broadcast run
    return report


def test_bench_smoke_storm(tmp_path: Path) -> None:
    """
    The restart storm with 50 streams: with --redis (one process and two
    workers) every client resumes without resync, with the in-memory log
    each gets one resync; none loses, doubles or misreads an event, and the
    times are measured.
    """
    report = scenario(tmp_path, ["--scenarios", "storm", "--storm-clients", "50"])
    storms = {record["variant"]: record for record in report["storm"]}
    assert set(storms) == {"redis", "memory", "workers2"}
    for variant, record in storms.items():
        assert record["error"] is None, record["error"]
        assert record["reached"] == record["back"] == record["had_last"] == 50
        assert record["loadgen"]["error_total"] == 0
        assert (record["lost"], record["doubled"], record["wrong_ids"]) == (0, 0, 0)
        assert record["not_back"] == record["no_live"] == 0
        assert record["checked"] >= 50 * (50 + 5)
        assert record["resync_clients"] == (50 if variant == "memory" else 0)
        assert 0 < record["replay_s"] <= record["live_s"]
        assert record["ramp_s"] > 0
    assert storms["redis"]["published_while_down"] > 0
    assert "## Restart storm" in report["table"]
    assert "| `--redis --workers 2` | 50 |" in report["table"]


def test_bench_smoke_ticker(tmp_path: Path) -> None:
    """
    The ticker workload at a tiny size: without and with slow readers,
    every stream ends with the newest value of every key, the fast streams'
    fan-out is measured and the server's memory sampled.
    """
    ticker = ["--ticker-streams", "20", "--ticker-slow", "5", "--ticker-keys", "20"]
    ticker += ["--ticker-rate", "100", "--ticker-seconds", "2"]
    report = scenario(tmp_path, ["--scenarios", "ticker", *ticker])
    without, with_slow = report["ticker"]
    assert (without["slow"], with_slow["slow"]) == (0, 5)
    for record in (without, with_slow):
        assert record["error"] is None, record["error"]
        result = record["loadgen"]
        assert result["error_total"] == 0
        assert result["published"] == result["acked"] == 200
        assert result["fast_complete"] == 20
        assert result["slow_complete"] == record["slow"]
        assert result["order_errors"] == result["id_mismatches"] == 0
        assert result["ids_not_acknowledged"] == 0
        assert result["fanout_ms_p99"] > 0
        assert record["samples"] and record["samples"][0]["rss_kb"] > 0
        assert record["conflated"] is not None
    assert "## Ticker: a conflated topic with slow readers" in report["table"]
