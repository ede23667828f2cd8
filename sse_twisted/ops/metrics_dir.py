"""
The parent's side of C{--metrics} with C{--workers N}: the directory where
the workers count, and the one endpoint that sums them up.

The workers count with C{prometheus_client}'s multiprocess mode
(L{sse_twisted.ops.worker_metrics}): each one writes its figures to files
of its own, named by its pid, in the directory the parent gives it in
C{PROMETHEUS_MULTIPROC_DIR}. The parent, which outlives the workers, serves
the sum of those files at C{/metrics} (C{prometheus_client}'s
C{MultiProcessCollector}): counters and histogram buckets added up, each
gauge as its C{multiprocess_mode} says (C{livesum}, C{livemin}: over the
workers alive).

When a worker ends, its gauges go (C{mark_process_dead}), and its counters
and histograms, which must keep counting, are added into one file of the
ended workers (pid L{ENDED}, which no process has) and their own files
removed: so counters never go backwards when a worker is replaced, and the
directory holds one set of files per live worker plus one, however often
workers are replaced. The directory is made private (mode 0700) when the
parent starts and removed when it stops.

The C{process_*} and C{python_*} figures of this endpoint are the parent's
own (see L{sse_twisted.ops.metrics.add_runtime_collectors}): the workers'
CPU time, memory and open files are not in them.
"""

from __future__ import annotations

import glob
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from twisted.logger import Logger
from twisted.web.server import Site

from sse_twisted.ops.metrics import add_runtime_collectors, metrics_site

ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"
"""Where C{prometheus_client} looks for the directory, in a worker."""

ENDED = 0
"""
The pid in the names of the files that keep the counts of ended workers:
no process has pid 0, and C{prometheus_client} reads a counter's or a
histogram's file whatever pid its name has.
"""

KEPT_KINDS = ("counter", "histogram", "summary")
"""The kinds of figure that keep counting after their worker has ended."""


class MetricsDirectory(Collector):
    """
    The directory the workers count in, and the sum of their counts.

    Scrapes are collected in the reactor's thread pool, while workers end
    in the reactor's thread: a lock keeps a scrape from reading the files
    of a worker half added to those of the ended workers.

    @ivar registry: What the parent's C{/metrics} serves: the workers'
        figures summed, and the parent's own process figures.
    """

    log = Logger()

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._path: str | None = None
        self.registry.register(self)
        add_runtime_collectors(self.registry)

    @property
    def path(self) -> str | None:
        """
        The directory, while it is open.
        """
        return self._path

    def open(self) -> dict[str, str]:
        """
        Make the directory, empty and readable by this user only, unless
        it is open already.

        @return: The environment variables that a worker needs to count in
            it.
        """
        with self._lock:
            if self._path is None:
                self._path = tempfile.mkdtemp(prefix="ssedemo-metrics-")
            return {ENVIRONMENT: self._path}

    def worker_ended(self, pid: int) -> None:
        """
        Drop the gauges of the worker C{pid}, which has ended, and add its
        counts to those of the ended workers. Never raises: a file that
        cannot be read is logged and left in place.
        """
        with self._lock:
            if self._path is None:
                return
            mark_process_dead(pid, self._path)
            for kind in KEPT_KINDS:
                own = Path(self._path, f"{kind}_{pid}.db")
                if own.exists():
                    self._keep(own, Path(self._path, f"{kind}_{ENDED}.db"))

    def _keep(self, own: Path, ended: Path) -> None:
        try:
            counts = list(MmapedDict.read_all_values_from_file(str(own)))
        except (OSError, ValueError, struct.error) as e:
            self.log.error("cannot read the metrics of {file}: {e}", file=own, e=e)
            return
        total = MmapedDict(str(ended))
        try:
            for key, value, _timestamp, _position in counts:
                before, _ = total.read_value(key)
                total.write_value(key, before + value, 0.0)
        finally:
            total.close()
        own.unlink()

    def close(self) -> None:
        """
        Remove the directory and everything in it.
        """
        with self._lock:
            if self._path is not None:
                shutil.rmtree(self._path, ignore_errors=True)
                self._path = None

    def collect(self) -> Iterable[Metric]:
        """
        @return: The workers' figures, summed as each one's kind and mode
            say; none while the directory is closed.
        """
        with self._lock:
            if self._path is None:
                return []
            files = glob.glob(os.path.join(self._path, "*.db"))
            return list(MultiProcessCollector.merge(files, accumulate=True))

    def site(self) -> Site:
        """
        @return: A web site that serves L{registry} at C{GET /metrics}.
        """
        return metrics_site(self.registry)
