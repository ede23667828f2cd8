"""
The churn benchmark: does memory hold steady while clients come and go?

ssedemo runs under C{bench/census.py}; the loadgen opens N streams, waits for
every greeting, closes them all, and does it again, W times. After each wave,
once C{/health} reports no open stream, the runner reads the server's RSS
from C{/proc} and its object census. A server that frees what a closed
stream held ends the last wave at about the RSS of the first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import run

CENSUS = Path(__file__).resolve().parent / "census.py"
DRAIN_DEADLINE = 30.0  # seconds for the server to see a wave's closes


def census_command(port: int) -> list[str]:
    """
    @return: ssedemo's benchmark command, run through L{CENSUS}.
    """
    _twistd, *arguments = run.server_command("ssedemo", port)
    return [sys.executable, str(CENSUS), *arguments]


def open_streams(port: int) -> int:
    """
    @return: The number of open streams that C{/health} reports.
    """
    url = f"http://127.0.0.1:{port}/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        streams: int = json.load(response)["streams"]
        return streams


def drained(port: int) -> None:
    """
    Wait until the server reports no open stream.

    @raise run.BenchError: If it still does after L{DRAIN_DEADLINE}.
    """
    deadline = time.monotonic() + DRAIN_DEADLINE
    while (streams := open_streams(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if streams:
        raise run.BenchError(f"{streams} streams still open after a wave")


def take_census(pid: int, path: Path, count: int) -> dict[str, Any]:
    """
    Ask the server for its census (the C{count}th) and wait for it.
    """
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + DRAIN_DEADLINE
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count and lines[count - 1].endswith("}"):
            census: dict[str, Any] = json.loads(lines[count - 1])
            return census
        time.sleep(0.05)
    raise run.BenchError("the server wrote no census")


def run_churn(options: argparse.Namespace) -> dict[str, Any]:
    """
    Run the churn benchmark once against ssedemo.

    @return: Per wave, the server's RSS and census after the closes and its
        CPU time per stream opened and closed (the census excluded), and the
        loadgen's report; or the error.
    """
    record: dict[str, Any] = {"error": None, "revision": run.ssedemo_revision()}
    waves: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-churn-") as tmp:
        workdir = Path(tmp)
        census = workdir / "census.jsonl"
        os.environ["SSEDEMO_CENSUS"] = str(census)
        try:
            with run.running("ssedemo", workdir, census_command) as (port, pid):
                time.sleep(run.SETTLE)
                cpu = [run.process_sample(pid)["cpu_s"]]

                def after_wave(line: str) -> None:
                    drained(port)
                    server = run.process_sample(pid)
                    reached = int(line.split()[2])
                    wave: dict[str, Any] = {"reached": reached}
                    wave["rss_kb"] = server["rss_kb"]
                    wave["cpu_us_per_stream"] = (
                        (server["cpu_s"] - cpu[0]) * 1e6 / reached if reached else None
                    )
                    wave["census"] = take_census(pid, census, len(waves) + 1)
                    waves.append(wave)
                    cpu[0] = run.process_sample(pid)["cpu_s"]

                record["loadgen"] = run.drive_loadgen(
                    _loadgen_command(port, options),
                    [("WAVE", run.CONNECT_TIMEOUT + run.SLACK)] * options.churn_waves,
                    workdir,
                    after_wave,
                )
        except (run.BenchError, OSError, ValueError) as e:
            record["error"] = str(e)
        finally:
            del os.environ["SSEDEMO_CENSUS"]
    record["waves"] = waves
    return record


def _loadgen_command(port: int, options: argparse.Namespace) -> list[str]:
    return [
        str(run.LOADGEN),
        *("--port", str(port), "--clients", str(options.churn_clients)),
        *("--rounds", "0", "--waves", str(options.churn_waves)),
        *("--connect-timeout", str(run.CONNECT_TIMEOUT)),
    ]


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """
    @return: The figures of the table, from one churn record.
    """
    waves = record["waves"]
    rates = record["loadgen"]["connect_rate_by_wave"]
    first, last = waves[0], waves[-1]
    return {
        "waves": len(waves),
        "rss_first_kb": first["rss_kb"],
        "rss_last_kb": last["rss_kb"],
        "rss_ratio": last["rss_kb"] / first["rss_kb"],
        "objects_first": first["census"]["objects"],
        "objects_last": last["census"]["objects"],
        "left_over": last["census"]["instances"],
        "full_collections": last["census"]["full_collections"],
        "connect_rate_first": rates[0],
        "connect_rate_last": rates[-1],
        "connect_rate_median": statistics.median(r for r in rates if r),
        "cpu_us_per_stream": statistics.median(
            w["cpu_us_per_stream"] for w in waves if w["cpu_us_per_stream"]
        ),
        "errors": record["loadgen"]["error_total"],
    }


def markdown(record: dict[str, Any], options: argparse.Namespace) -> list[str]:
    """
    @return: The lines of the churn section of C{RESULTS.md}.
    """
    lines = [
        "",
        "## Connection churn",
        "",
        f"ssedemo alone: {options.churn_waves} waves of"
        f" {options.churn_clients:,} streams, each opened (greeted) then closed"
        " by the client. Measured after each wave, once `/health` reports no"
        " open stream: the RSS, and the objects the garbage collector tracks"
        " (those frozen at start-up apart). Left over: live instances of the"
        " classes of one stream (EventStream, request, channel, connection)"
        " after the last wave, not yet freed (a request and a connection may"
        " be the runner's own `/health` check). Server CPU: per stream opened"
        " and closed, median over the waves.",
        "",
    ]
    if record["error"]:
        return [*lines, f"Failed: {record['error']}"]
    s = summary(record)
    left = ", ".join(f"{name} {n}" for name, n in s["left_over"].items())
    lines += [
        "| RSS after wave 1 | RSS after last wave | ratio | objects after"
        " wave 1 | objects after last wave | left over | full collections"
        " | connects/s wave 1 | connects/s last wave | connects/s median"
        " | server CPU µs/stream | errors |",
        "|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|",
        "| "
        + " | ".join(
            [
                f"{s['rss_first_kb'] / 1024:.1f} MB",
                f"{s['rss_last_kb'] / 1024:.1f} MB",
                f"{s['rss_ratio']:.2f}x",
                run.number(s["objects_first"], 0),
                run.number(s["objects_last"], 0),
                left,
                str(s["full_collections"]),
                run.number(s["connect_rate_first"], 0),
                run.number(s["connect_rate_last"], 0),
                run.number(s["connect_rate_median"], 0),
                run.number(s["cpu_us_per_stream"]),
                str(s["errors"]),
            ]
        )
        + " |",
        "",
        "RSS after each wave (MB): "
        + ", ".join(f"{w['rss_kb'] / 1024:.1f}" for w in record["waves"]),
    ]
    return lines
