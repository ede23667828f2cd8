"""
The load benchmark, run small against ssedemo alone: it builds, it runs, and
its figures add up. The peers (and their virtualenv) are not involved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.mark.parametrize("server", ["ssedemo", "ssedemo-redis", "ssedemo-workers2"])
def test_bench_smoke(tmp_path: Path, server: str) -> None:
    """
    50 streams and 3 rounds: every stream gets every event, without errors,
    and the server's CPU time over the rounds is measured (with Redis, on a
    redis-server the run starts and stops).
    """
    results = tmp_path / "results.json"
    table = tmp_path / "RESULTS.md"
    workload = ["--clients", "50", "--rounds", "3", "--repeat", "1"]
    outputs = ["--json", str(results), "--markdown", str(table)]
    done = subprocess.run(
        [sys.executable, str(RUN), *workload, "--servers", server, *outputs],
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(results.read_text())
    [run] = report["runs"]
    assert run["error"] is None
    summary = report["summary"][server]
    assert summary["connections"] == 50
    assert summary["errors"] == 0
    assert summary["failed_runs"] == 0
    assert summary["deliveries"] == 150
    assert summary["server_cpu_us_per_delivery"] > 0
    assert f"| {server} | 50 |" in table.read_text()
    # Counted: the server, its workers (ssedemo --workers) and redis-server.
    expected = {"ssedemo": 1, "ssedemo-redis": 2, "ssedemo-workers2": 4}[server]
    assert run["samples"]["done"]["processes"] == expected
