"""
The load benchmark, run small against ssedemo alone: it builds, it runs, and
its figures add up. The peers (and their virtualenv) are not involved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_bench_smoke(tmp_path: Path) -> None:
    """
    50 streams and 3 rounds: every stream gets every event, without errors,
    and the server's CPU time over the rounds is measured, with and without
    metrics. Then 3 waves of 20 streams opened and closed: each wave is
    measured once the server has seen its streams close, and none of their
    streams is alive any more.
    """
    results = tmp_path / "results.json"
    table = tmp_path / "RESULTS.md"
    workload = ["--clients", "50", "--rounds", "3", "--repeat", "1"]
    workload += ["--churn-waves", "3", "--churn-clients", "20"]
    outputs = ["--json", str(results), "--markdown", str(table)]
    done = subprocess.run(
        [
            sys.executable,
            str(RUN),
            *workload,
            "--servers",
            "ssedemo,ssedemo-metrics",
            *outputs,
        ],
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(results.read_text())
    assert [run["error"] for run in report["runs"]] == [None, None]
    for name in ("ssedemo", "ssedemo-metrics"):
        summary = report["summary"][name]
        assert summary["connections"] == 50
        assert summary["errors"] == 0
        assert summary["failed_runs"] == 0
        assert summary["deliveries"] == 150
        assert summary["server_cpu_us_per_delivery"] > 0
    assert "| ssedemo | 50 |" in table.read_text()
    churn = report["churn"]
    assert churn["error"] is None
    assert [wave["reached"] for wave in churn["waves"]] == [20, 20, 20]
    assert churn["loadgen"]["error_total"] == 0
    assert all(wave["rss_kb"] > 0 for wave in churn["waves"])
    assert all(wave["census"]["objects"] > 0 for wave in churn["waves"])
    # Closed streams are freed at once, not at the next full collection.
    assert churn["waves"][-1]["census"]["instances"]["EventStream"] == 0
    assert "## Connection churn" in table.read_text()
