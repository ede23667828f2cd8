"""
Tests for L{sse_twisted.ops.metrics_dir} and L{sse_twisted.ops.worker_metrics}:
C{--metrics} with C{--workers N}, in one process. Each simulated worker
counts in C{prometheus_client}'s multiprocess files under a pid of its own
(the library's C{process_identifier}), on a fake clock; the parent's
registry sums them up. The real processes are in
C{test_workers_process.py}.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import values
from twisted.internet.task import Clock

from sse_twisted.ops.metrics_dir import ENDED, ENVIRONMENT, MetricsDirectory
from sse_twisted.ops.worker_metrics import REFRESH, Mirror, WorkerMetrics


@dataclass
class SharedLog:
    available: bool = True
    skipped: int = 0


@dataclass
class Worker:
    """
    One simulated worker: its metrics, its open streams and its log.
    """

    pid: int
    metrics: WorkerMetrics
    clock: Clock
    log: SharedLog
    streams: int = 0

    def refresh(self) -> None:
        self.clock.advance(REFRESH)


@pytest.fixture
def directory(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetricsDirectory]:
    """
    The parent's directory, open, and C{prometheus_client} in multiprocess
    mode in it as a worker finds it.
    """
    parent = MetricsDirectory()
    environment = parent.open()
    monkeypatch.setenv(ENVIRONMENT, environment[ENVIRONMENT])
    yield parent
    parent.close()


@pytest.fixture
def start_worker(
    directory: MetricsDirectory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[int], Worker]]:
    started: list[Worker] = []

    def start(pid: int) -> Worker:
        monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: pid))
        clock = Clock()
        worker = Worker(pid, WorkerMetrics(clock), clock, SharedLog())
        worker.metrics.count_streams(lambda: worker.streams)
        worker.metrics.watch_shared_log(worker.log)
        worker.metrics.service.startService()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.metrics.service.stopService()


def scraped(directory: MetricsDirectory, name: str, **labels: str) -> float | None:
    return directory.registry.get_sample_value(name, labels)


def test_counters_and_histograms_are_summed(
    directory: MetricsDirectory, start_worker: Callable[[int], Worker]
) -> None:
    one, two = start_worker(101), start_worker(102)
    one.metrics.streams_opened(3)
    two.metrics.streams_opened(4)
    one.metrics.fanned_out(3, 0.0002)
    two.metrics.fanned_out(4, 0.2)
    two.metrics.dropped_slow()
    assert scraped(directory, "ssedemo_streams_opened_total") == 7
    assert scraped(directory, "ssedemo_deliveries_total") == 7
    assert scraped(directory, "ssedemo_streams_dropped_total", reason="slow") == 1
    assert scraped(directory, "ssedemo_fanout_seconds_count") == 2
    assert scraped(directory, "ssedemo_fanout_seconds_sum") == pytest.approx(0.2002)
    bucket = "ssedemo_fanout_seconds_bucket"
    assert scraped(directory, bucket, le="0.00025") == 1
    assert scraped(directory, bucket, le="0.25") == 2


def test_gauges_are_read_at_each_refresh(
    directory: MetricsDirectory, start_worker: Callable[[int], Worker]
) -> None:
    """
    Open streams are summed and the broker is up only if every worker
    reaches it; both are read every L{REFRESH} seconds.
    """
    one, two = start_worker(101), start_worker(102)
    assert scraped(directory, "ssedemo_streams") == 0
    assert scraped(directory, "ssedemo_broker_up") == 1
    one.streams, two.streams = 5, 2
    two.log.available = False
    two.log.skipped = 3
    assert scraped(directory, "ssedemo_streams") == 0  # not read yet
    one.refresh()
    two.refresh()
    assert scraped(directory, "ssedemo_streams") == 7
    assert scraped(directory, "ssedemo_broker_up") == 0
    assert scraped(directory, "ssedemo_redis_entries_skipped_total") == 3
    two.log.available = True
    two.log.skipped = 4
    two.refresh()
    assert scraped(directory, "ssedemo_broker_up") == 1
    assert scraped(directory, "ssedemo_redis_entries_skipped_total") == 4


def test_an_ended_worker_keeps_its_counts_and_loses_its_gauges(
    directory: MetricsDirectory, start_worker: Callable[[int], Worker]
) -> None:
    """
    Once a worker has ended, its streams no longer count, nor does its view
    of the broker, but what it counted still does, and its replacement
    counts on from there.
    """
    one, two = start_worker(101), start_worker(102)
    one.metrics.streams_opened(3)
    two.metrics.streams_opened(4)
    one.streams, two.streams = 3, 4
    one.log.available = False
    one.refresh()
    two.refresh()
    assert scraped(directory, "ssedemo_broker_up") == 0
    directory.worker_ended(101)
    assert scraped(directory, "ssedemo_streams_opened_total") == 7
    assert scraped(directory, "ssedemo_streams") == 4
    assert scraped(directory, "ssedemo_broker_up") == 1
    three = start_worker(103)
    three.metrics.streams_opened(1)
    assert scraped(directory, "ssedemo_streams_opened_total") == 8


def test_the_directory_holds_the_live_workers_files_and_one_more_set(
    directory: MetricsDirectory, start_worker: Callable[[int], Worker]
) -> None:
    """
    However often workers are replaced, the directory keeps the files of
    the workers alive and one file per kind for all the ended ones; the
    counts of each ended worker stay in the sum.
    """
    assert directory.path is not None
    path = Path(directory.path)
    live = start_worker(100)
    live.metrics.fanned_out(1, 0.001)
    for pid in range(200, 210):
        worker = start_worker(pid)
        worker.metrics.streams_opened(1)
        worker.metrics.fanned_out(2, 0.001)
        worker.refresh()
        directory.worker_ended(pid)
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [
            f"counter_{ENDED}.db",
            f"histogram_{ENDED}.db",
            "counter_100.db",
            "histogram_100.db",
            "gauge_livesum_100.db",
            "gauge_livemin_100.db",
        ]
    )
    assert scraped(directory, "ssedemo_streams_opened_total") == 10
    assert scraped(directory, "ssedemo_deliveries_total") == 21
    assert scraped(directory, "ssedemo_fanout_seconds_count") == 11


def test_the_directory_is_private_and_removed_at_close() -> None:
    directory = MetricsDirectory()
    assert directory.path is None
    assert list(directory.collect()) == []
    environment = directory.open()
    path = environment[ENVIRONMENT]
    assert directory.open() == environment
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert os.listdir(path) == []
    directory.worker_ended(4321)  # nothing of it: harmless
    directory.close()
    assert not os.path.exists(path)
    assert directory.path is None
    directory.worker_ended(4321)  # after the close: harmless too
    directory.close()


def test_an_unreadable_file_is_left(directory: MetricsDirectory) -> None:
    """
    A file that cannot be read (a worker killed as it grew it) is left in
    place, and the worker's end goes on.
    """
    assert directory.path is not None
    broken = Path(directory.path, "counter_77.db")
    broken.write_bytes(b"\x01")
    directory.worker_ended(77)
    assert broken.exists()


def test_the_parent_serves_its_own_process_figures(
    directory: MetricsDirectory,
) -> None:
    assert scraped(directory, "process_cpu_seconds_total") is not None


def test_mirror_refuses_what_it_cannot_copy() -> None:
    class Histograms:
        def collect(self) -> list[object]:
            from prometheus_client.core import HistogramMetricFamily

            return [HistogramMetricFamily("h", "H", buckets=[("+Inf", 1)], sum_value=1)]

    from prometheus_client import CollectorRegistry

    with pytest.raises(ValueError, match="cannot mirror h, a histogram"):
        Mirror(Histograms(), CollectorRegistry())  # type: ignore[arg-type]
