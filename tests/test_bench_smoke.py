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
        expected = {"ssedemo-redis": 2, "ssedemo-workers2": 4}.get(run["server"], 1)
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
