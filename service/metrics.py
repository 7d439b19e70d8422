"""Prometheus metrics with one CollectorRegistry per app, so several apps can live in one process.

Children for fixed labels (routes) are bound once, so the per-frame cost is one counter
increment, one sample-counter increment and one histogram observe. The per-session quality gauge
`lrr_session_reduction_db{key, stat}` is computed when /metrics is scraped, never per frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from lrr_service.core.vocabulary import Mode

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SOLVE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REDUCTION_METRIC = "lrr_session_reduction_db"
REDUCTION_HELP = (
    "Reduction of power by the rereferencing, 10 log10(P_in / P_out) in dB over the quality window, per session: "
    "stat=median (median channel) or stat=worst (the channel reduced least); sessions not measured yet export none."
)

QualitySource = Callable[[], Iterable[tuple[str, float, float]]]
"""(key, median dB, worst dB) of every measured session."""

__all__ = ["PROMETHEUS_CONTENT_TYPE", "REDUCTION_METRIC", "RouteMetrics", "ServiceMetrics"]


@dataclass(frozen=True)
class RouteMetrics:
    """The pre-bound children one websocket route updates per frame."""

    frames: Counter
    samples: Counter
    latency: Histogram


class _ReductionCollector(Collector):
    """`lrr_session_reduction_db{key, stat}`, read from the sessions when the registry is collected."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(REDUCTION_METRIC, REDUCTION_HELP, labels=["key", "stat"])
        source = self.metrics.quality_source
        for key, median, worst in source() if source is not None else ():
            family.add_metric([key, "median"], median)
            family.add_metric([key, "worst"], worst)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(REDUCTION_METRIC, REDUCTION_HELP, labels=["key", "stat"])


class ServiceMetrics:
    """Every metric the service exports, registered in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._frames = Counter(
            "lrr_frames", "Chunks answered with a chunk or ack reply, per route.", ["route"], registry=r
        )
        self._samples = Counter("lrr_samples", "Samples in answered chunks, per route.", ["route"], registry=r)
        self._latency = Histogram(
            "lrr_reply_latency_seconds",
            "Time from a chunk's arrival to its reply being handed to the socket.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter("lrr_errors", "Error replies and refused requests, by error code.", ["code"], registry=r)
        self.resets = Counter("lrr_session_resets", "Session resets, by reason.", ["reason"], registry=r)
        self.sessions = Gauge("lrr_sessions", "Sessions currently held.", registry=r)
        self.connections = Gauge(
            "lrr_websocket_connections", "Open websocket connections, per route.", ["route"], registry=r
        )
        self.solve_seconds = Histogram(
            "lrr_solve_duration_seconds",
            "Wall time of one weights solve in the worker thread.",
            buckets=SOLVE_BUCKETS,
            registry=r,
        )
        self.solves = Counter("lrr_solves", "Solves by outcome (installed, stale, failed).", ["outcome"], registry=r)
        self.checkpoints = Counter(
            "lrr_checkpoints", "Session checkpoints by outcome (ok, failed).", ["outcome"], registry=r
        )
        self.uploads = Counter("lrr_weights_uploads", "Weight matrices uploaded and applied.", registry=r)
        self.quality_source: QualitySource | None = None
        """Set by the session registry: the sessions' quality summaries, read at scrape time."""
        r.register(_ReductionCollector(self))
        self.routes = {
            route: RouteMetrics(self._frames.labels(route), self._samples.labels(route), self._latency.labels(route))
            for route in Mode
        }

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
