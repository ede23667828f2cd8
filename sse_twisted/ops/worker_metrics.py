"""
One worker's side of C{--metrics} with C{--workers N}: its figures, counted
in the files of C{prometheus_client}'s multiprocess mode, for the parent to
sum up and serve (L{sse_twisted.ops.metrics_dir}).

In that mode a figure can only be what the worker writes to its file:
nothing is read at scrape time, since the scrape happens in another
process. So the figures that L{sse_twisted.ops.metrics.Metrics} reads at
each scrape (the open streams, the shared log's state) are read here every
L{REFRESH} seconds instead and written down: they are at most that old.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from prometheus_client import Counter, Gauge, values
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.application.internet import TimerService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sse_twisted.ops.metrics import Metrics, SharedLogCollector, SharedLogState
from sse_twisted.ops.metrics_dir import ENVIRONMENT

REFRESH = 0.5
"""Seconds between two readings of the figures read rather than counted."""

GaugeMode = Literal["livesum", "livemin"]

GAUGE_MODES: dict[str, GaugeMode] = {"ssedemo_broker_up": "livemin"}
"""
How the parent sums up each gauge over the workers alive, when not
C{livesum}: the broker is up only if every worker reaches it.
"""

log = Logger()


class WorkerMetrics(Metrics):
    """
    A worker's metrics: those of L{Metrics}, counted in the worker's files
    of C{prometheus_client}'s multiprocess mode, and the figures read at
    scrape time by L{Metrics} read every L{REFRESH} seconds by L{service}.

    @ivar service: Reads those figures while it runs; the server's service
        is its parent.
    """

    def __init__(self, clock: IReactorTime, interval: float = REFRESH) -> None:
        """
        @param clock: Times the readings.
        @param interval: Seconds between two readings.
        """
        if not getattr(values.ValueClass, "_multiprocess", False):
            # prometheus_client chose its mode when it was imported: in the
            # parent, before the worker forked from it had this variable.
            values.ValueClass = values.get_value_class()
        if not getattr(values.ValueClass, "_multiprocess", False):
            log.error(
                "{variable} is not set: this worker's figures will not reach"
                " the parent",
                variable=ENVIRONMENT,
            )
        super().__init__()
        self._readings: list[Callable[[], None]] = []
        self.service = TimerService(interval, self.refresh)
        self.service.clock = clock

    def count_streams(self, count: Callable[[], int]) -> None:
        """
        Write C{ssedemo_streams} from C{count} at each reading.

        @param count: Returns the number of open streams of this worker.
        """
        self._readings.append(lambda: self._streams.set(count()))

    def watch_shared_log(self, log: SharedLogState) -> None:
        """
        Write C{ssedemo_broker_up} and C{ssedemo_redis_entries_skipped_total}
        from C{log} at each reading.

        @param log: This worker's shared event log.
        """
        self._readings.append(Mirror(SharedLogCollector(log), self.registry))

    def refresh(self) -> None:
        """
        Read the figures that are read rather than counted, and write them.
        """
        for reading in self._readings:
            reading()


class Mirror:
    """
    Copies what a collector of unlabelled gauges and counters gives into
    metrics of the same names, which count in multiprocess mode: gauges are
    set, counters advanced by what they grew since the last copy.
    """

    def __init__(self, collector: Collector, registry: CollectorRegistry) -> None:
        """
        @param collector: Gives the figures; read now for their names.
        @param registry: Where the copies are registered.
        """
        self._collector = collector
        self._copies: dict[str, Callable[[float], None]] = {}
        for family in collector.collect():
            self._copies[family.name] = self._copy(family, registry)

    def _copy(
        self, family: Metric, registry: CollectorRegistry
    ) -> Callable[[float], None]:
        name, help_text = family.name, family.documentation
        if family.type == "gauge":
            mode = GAUGE_MODES.get(name, "livesum")
            return Gauge(name, help_text, registry=registry, multiprocess_mode=mode).set
        if family.type == "counter":
            return _Advance(Counter(name, help_text, registry=registry))
        raise ValueError(f"cannot mirror {name}, a {family.type}")

    def __call__(self) -> None:
        for family in self._collector.collect():
            [sample] = family.samples
            self._copies[family.name](sample.value)


class _Advance:
    """
    Advances a counter to a total read elsewhere.
    """

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._total = 0.0

    def __call__(self, total: float) -> None:
        if total > self._total:
            self._counter.inc(total - self._total)
            self._total = total
