"""
The ticker workload: live state on a conflated topic, with slow readers.

ssedemo runs with C{--conflate ticker}; C{bench/sseload.c ticker} opens F
streams that read at once and S slow ones (a small receive buffer, reads
paced at a tenth of the bytes the fast streams get), then publishes R keyed
events a second for D seconds on C{POST /publish}, round robin over K keys
(key C{k<n>}, data C{"<n> <seq>"}), and once publishing has stopped lets
every stream read at full speed until it holds the newest value of every key.
The same run without slow readers comes first, for the fast streams'
fan-out without them. The runner samples the server's RSS (and the kernel's
TCP memory, where a slow reader's backlog sits until the socket's send
buffer is full) every second, and reads C{ssedemo_events_conflated_total}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import run
import storm

SAMPLE_EVERY = 1.0  # seconds between two memory samples
PAGE_KB = 4


def tcp_memory_kb() -> int:
    """
    @return: The memory of all TCP sockets of the machine
        (C{/proc/net/sockstat}, in pages), in KB.
    """
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * PAGE_KB
    return 0


def conflated(port: int) -> float | None:
    """
    @return: C{ssedemo_events_conflated_total} from the metrics endpoint.
    """
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("ssedemo_events_conflated_total "):
            return float(line.split()[1])
    return None


def ticker_backlog(options: argparse.Namespace) -> int:
    """
    @return: The C{--max-backlog} of the ticker's server: room for one
        pending event per key twice over (an event's data, id and framing),
        and never below the default of 1 MiB. A conflated stream holds at
        most one pending event per key, so this is what it needs not to be
        dropped.
    """
    return max(1 << 20, 2 * options.ticker_keys * (options.ticker_pad + 128))


def ticker_once(options: argparse.Namespace, slow: int) -> dict[str, Any]:
    """
    One ticker run with C{slow} slow readers.

    @return: The loadgen's report, the memory samples and the conflated
        count, or the error.
    """
    record: dict[str, Any] = {"slow": slow, "error": None}
    record["revision"] = run.ssedemo_revision()
    metrics = run.free_port()
    extra = ["--conflate", options.ticker_topic]
    extra += ["--max-backlog", str(ticker_backlog(options))]
    extra += ["--metrics", f"tcp:{metrics}:interface=127.0.0.1"]
    seconds = options.ticker_seconds
    with tempfile.TemporaryDirectory(prefix="bench-ticker-") as tmp:
        workdir = Path(tmp)
        errors = workdir / "sseload.stderr"
        try:
            with (
                run.running("ssedemo", workdir, extra=extra) as (port, pid),
                errors.open("wb") as err,
            ):
                command = [str(storm.SSELOAD), "ticker", "--port", str(port)]
                command += ["--fast", str(options.ticker_streams)]
                command += ["--slow", str(slow), "--keys", str(options.ticker_keys)]
                command += ["--rate", str(options.ticker_rate)]
                command += ["--pad", str(options.ticker_pad)]
                command += ["--seconds", str(seconds)]
                command += ["--topic", options.ticker_topic]
                command += ["--connect-timeout", str(run.CONNECT_TIMEOUT)]
                process = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
                )
                assert process.stdin is not None and process.stdout is not None
                try:
                    lines = run.Lines(process.stdout)
                    lines.expect("READY", run.CONNECT_TIMEOUT + run.SLACK)
                    samples: list[dict[str, float]] = []
                    done = threading.Event()

                    def sampler() -> None:
                        began = time.monotonic()
                        while not done.wait(SAMPLE_EVERY if samples else 0):
                            server = run.process_sample(pid)
                            samples.append(
                                {
                                    "t": time.monotonic() - began,
                                    "rss_kb": server["rss_kb"],
                                    "tcp_kb": tcp_memory_kb(),
                                }
                            )

                    thread = threading.Thread(target=sampler, daemon=True)
                    thread.start()
                    process.stdin.write(b"\n")
                    process.stdin.flush()
                    # Publishing, then the drain (each bounded by the loadgen).
                    limit = seconds + 60 + run.SLACK
                    try:
                        lines.expect("DONE", limit + run.SLACK)
                    finally:
                        done.set()
                        thread.join(timeout=run.SLACK)
                    record["samples"] = samples
                    record["conflated"] = conflated(metrics)
                    process.stdin.write(b"\n")
                    process.stdin.flush()
                    record["loadgen"] = json.loads(lines.expect("{", run.SLACK))
                    process.wait(timeout=run.SLACK)
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait(timeout=run.SLACK)
        except (run.BenchError, OSError, ValueError, subprocess.SubprocessError) as e:
            record["error"] = f"{e} {run.tail(errors)}".strip()
    return record


def memory(record: dict[str, Any], key: str) -> dict[str, float | None]:
    """
    @return: A memory figure's first sample (publishing starts), its
        largest, and its median over the first and the second half of the
        publishing, in KB.
    """
    series = [s[key] for s in record.get("samples", [])]
    if not series:
        return {"start": None, "max": None, "first_half": None, "second_half": None}
    half = max(1, len(series) // 2)
    return {
        "start": series[0],
        "max": max(series),
        "first_half": statistics.median(series[:half]),
        "second_half": statistics.median(series[half:] or series),
    }


def run_ticker(options: argparse.Namespace) -> list[dict[str, Any]]:
    """
    The ticker workload without slow readers, then with them.
    """
    run.build_loadgen(storm.SSELOAD_SOURCE, storm.SSELOAD)
    records = []
    for slow in (0, options.ticker_slow):
        print(f"ticker: {options.ticker_streams} streams, {slow} slow", flush=True)
        record = ticker_once(options, slow)
        if record["error"]:
            print(f"  {record['error']}", flush=True)
        else:
            r = record["loadgen"]
            print(
                f"  fan-out p99 {run.number(r['fanout_ms_p99'])} ms,"
                f" slow streams complete {r['slow_complete']}/{r['slow']},"
                f" conflated {run.number(record['conflated'], 0)}",
                flush=True,
            )
        records.append(record)
    return records


def markdown(
    records: Sequence[dict[str, Any]], options: argparse.Namespace
) -> list[str]:
    """
    @return: The lines of the ticker's section of C{RESULTS.md}.
    """
    lines = [
        "",
        "## Ticker: a conflated topic with slow readers",
        "",
        f"ssedemo `--conflate {options.ticker_topic}`: {options.ticker_keys:,}"
        f" keys updated {options.ticker_rate} times a second in all (keyed"
        f" `POST /publish`, round robin) for {options.ticker_seconds} s;"
        f" {options.ticker_streams:,} streams read at full speed, and in the"
        " second run slow ones too (receive buffer 4 KB, reads paced at a"
        " tenth of the bytes a fast stream gets), which read at full speed"
        " once publishing stops. Each event's data carries"
        f" {options.ticker_pad:,} filler bytes, so that slow streams fall"
        " behind the kernel's socket buffers within the run; `--max-backlog"
        f" {ticker_backlog(options):,}` leaves room for one pending event per"
        " key. Fan-out: from a POST to the last fast"
        " stream's copy, per event. Complete: streams that end with the"
        " newest value of every key (by the key and number in the data, the"
        " id checked against the publisher's). Memory: the server's RSS and"
        " the machine's TCP socket memory (where a slow reader's backlog sits"
        " until the socket's send buffer is full), sampled every second from"
        " the start of publishing: first sample, largest, median of the first"
        " and of the second half.",
        "",
        "| slow streams | fan-out p50 ms | fan-out p99 ms | p99 ratio"
        " | events/s | fast complete | slow complete | slow events received"
        " | conflated | RSS MB start / max / 1st half / 2nd half"
        " | TCP memory MB start / max / 1st half / 2nd half | errors |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|",
    ]
    base = records[0].get("loadgen", {}).get("fanout_ms_p99") if records else None
    for record in records:
        if record["error"]:
            cells = [str(record["slow"]), *["—"] * 10, record["error"]]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        r = record["loadgen"]

        def mb(key: str, record: dict[str, Any] = record) -> str:
            m = memory(record, key)
            return " / ".join(
                run.number(v / 1024 if v is not None else None) for v in m.values()
            )

        problems = [f"{k} {n}" for k, n in r["errors"].items() if n]
        for k in ("order_errors", "id_mismatches", "ids_not_acknowledged"):
            if r[k]:
                problems.append(f"{k.replace('_', ' ')} {r[k]}")
        cells = [
            str(record["slow"]),
            run.number(r["fanout_ms_p50"]),
            run.number(r["fanout_ms_p99"]),
            run.ratio(r["fanout_ms_p99"], base),
            run.number(r["publish_rate"], 0),
            f"{r['fast_complete']}/{r['fast']}",
            f"{r['slow_complete']}/{r['slow']}",
            run.number(r["slow_events"], 0),
            run.number(record["conflated"], 0),
            mb("rss_kb"),
            mb("tcp_kb"),
            ", ".join(problems) or "0",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
