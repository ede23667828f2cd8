"""
Prometheus metrics: an L{sse_twisted.observer.Observer} that counts with
C{prometheus_client}, and the web site that serves them at C{/metrics}.

Each L{Metrics} has a registry of its own, with the process, platform and
garbage-collector collectors that C{prometheus_client} puts on its global
registry: so several servers can live in one process (as in the tests)
without clashing, and the scrape shows exactly one server's figures.

No metric has a label whose values come from clients (topics, ids): the
set of time series stays the same whatever clients do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Site

FANOUT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""
The buckets of C{ssedemo_fanout_seconds}, in seconds: from a topic with a
handful of streams (well under a millisecond) to tens of thousands.
"""


class SharedLogState(Protocol):
    """
    What the metrics read from a shared event log (Redis) at each scrape.
    """

    @property
    def available(self) -> bool:
        """
        Whether the log can be reached.
        """

    @property
    def skipped(self) -> int:
        """
        How many of its entries were skipped because they cannot be sent.
        """


class SharedLogCollector(Collector):
    """
    Reads C{ssedemo_broker_up} and C{ssedemo_redis_entries_skipped_total}
    from a shared event log when collected.
    """

    def __init__(self, log: SharedLogState) -> None:
        """
        @param log: The shared event log.
        """
        self._log = log

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "ssedemo_broker_up",
            "1 while the shared event log (Redis) can be reached, else 0.",
            value=1.0 if self._log.available else 0.0,
        )
        yield CounterMetricFamily(
            "ssedemo_redis_entries_skipped",
            "Redis stream entries skipped because they cannot be sent.",
            value=self._log.skipped,
        )


class Metrics:
    """
    The server's metrics, kept in a registry of their own.

    @ivar registry: What a scrape collects: the metrics below and the
        process, platform and garbage-collector collectors.
    """

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry()
        add_runtime_collectors(registry)
        self._streams = Gauge(
            "ssedemo_streams",
            "Open event streams.",
            registry=registry,
            multiprocess_mode="livesum",  # with --workers: of the workers alive
        )
        self._opened = Counter(
            "ssedemo_streams_opened_total",
            "Event streams opened.",
            registry=registry,
        )
        self._published = Counter(
            "ssedemo_events_published_total",
            "Events published through this server (POST /api, /publish).",
            registry=registry,
        )
        self._deliveries = Counter(
            "ssedemo_deliveries_total",
            "Event copies written to streams by fan-outs.",
            registry=registry,
        )
        dropped = Counter(
            "ssedemo_streams_dropped_total",
            "Event streams dropped by the server, by reason.",
            ["reason"],
            registry=registry,
        )
        self._dropped_slow = dropped.labels(reason="slow")
        self._refused = Counter(
            "ssedemo_streams_refused_total",
            "Event streams refused because --max-clients were open.",
            registry=registry,
        )
        self._conflated = Counter(
            "ssedemo_events_conflated",
            "Queued events discarded on streams that are behind, replaced by"
            " newer ones of the same topic and key (--conflate).",
            registry=registry,
        )
        resumes = Counter(
            "ssedemo_resumes_total",
            "Clients that came back with a last event id, by result.",
            ["result"],
            registry=registry,
        )
        self._replayed = resumes.labels(result="replayed")
        self._resync = resumes.labels(result="resync")
        self._fanout = Histogram(
            "ssedemo_fanout_seconds",
            "Time to write one event to all of its streams.",
            buckets=FANOUT_BUCKETS,
            registry=registry,
        )

    def count_streams(self, count: Callable[[], int]) -> None:
        """
        Read C{ssedemo_streams} from C{count} at each scrape.

        @param count: Returns the number of open streams, such as
            C{hub.__len__}.
        """
        self._streams.set_function(count)

    def watch_shared_log(self, log: SharedLogState) -> None:
        """
        Read C{ssedemo_broker_up} and
        C{ssedemo_redis_entries_skipped_total} from C{log} at each scrape.

        @param log: The shared event log, such as a
            L{sse_twisted.redis.log.RedisLog}.
        """
        self.registry.register(SharedLogCollector(log))

    def streams_opened(self, count: int) -> None:
        self._opened.inc(count)

    def published(self) -> None:
        self._published.inc()

    def fanned_out(self, streams: int, seconds: float) -> None:
        self._deliveries.inc(streams)
        self._fanout.observe(seconds)

    def resumed(self, replayed: bool) -> None:
        (self._replayed if replayed else self._resync).inc()

    def conflated(self, count: int) -> None:
        self._conflated.inc(count)

    def dropped_slow(self) -> None:
        self._dropped_slow.inc()

    def refused(self) -> None:
        self._refused.inc()

    def site(self) -> Site:
        """
        @return: A web site that serves these metrics at C{GET /metrics}, in
            the Prometheus text format (or OpenMetrics, if the scraper asks
            for it), through C{prometheus_client}'s Twisted resource.
        """
        return metrics_site(self.registry)


def add_runtime_collectors(registry: CollectorRegistry) -> None:
    """
    Put on C{registry} the process, platform and garbage-collector
    collectors that C{prometheus_client} puts on its global registry: they
    describe the process that serves the scrape.
    """
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def metrics_site(registry: CollectorRegistry) -> Site:
    """
    @return: A web site that serves C{registry} at C{GET /metrics}, in the
        Prometheus text format (or OpenMetrics, if the scraper asks for it),
        through C{prometheus_client}'s Twisted resource, which collects in
        the reactor's thread pool.
    """
    # Imported here: it binds the global reactor, which only a server that
    # serves metrics needs.
    from prometheus_client.twisted import MetricsResource

    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry))
    return Site(root)
