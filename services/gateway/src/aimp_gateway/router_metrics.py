"""The router's Prometheus metrics: counters bumped on failures, load gauges read at scrape.

Per-instance load (calls in flight, latency estimate) is exported by a collector
that reads the router's counters when /metrics is scraped: nothing is done per
call, and instances that left the registry vanish from the output.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aimp_gateway.balancer import InstanceLoad

EJECTIONS = Counter(
    "aimp_gateway_outlier_ejections_total",
    "Instances taken out of rotation by passive failure detection, by failure kind.",
    ["service", "reason"],
)
EJECTED = Gauge(
    "aimp_gateway_outlier_ejected",
    "Instances out of rotation now (ejected or probing), per service.",
    ["service"],
)
FAILURES = Counter(
    "aimp_gateway_upstream_failures_total",
    "Calls to an instance that failed (connect, gateway = broken or timed out, http_5xx).",
    ["service", "kind"],
)
RETRIES = Counter(
    "aimp_gateway_upstream_retries_total",
    "Calls sent to a second instance after the first failed: connect (never sent) or "
    "broken (an idempotent call whose connection broke).",
    ["service", "reason"],
)


class LoadSource(Protocol):
    """What the collector reads: the router's load counters, clock and EWMA decay."""

    loads: dict[tuple[str, str], InstanceLoad]
    clock: Callable[[], float]
    decay_s: float


class LoadCollector(Collector):
    """Per-instance load gauges, read from the newest router at scrape time.

    Nothing happens on the hot path, and instances that left vanish from /metrics.
    """

    def __init__(self) -> None:
        self.router: weakref.ref[LoadSource] | None = None

    def watch(self, router: LoadSource) -> None:
        """Report this router's loads from now on (the newest router wins)."""
        self.router = weakref.ref(router)

    def collect(self) -> Iterator[Metric]:
        outstanding = GaugeMetricFamily(
            "aimp_gateway_instance_outstanding",
            "Calls from this gateway in flight to the instance now.",
            labels=["service", "instance"],
        )
        latency = GaugeMetricFamily(
            "aimp_gateway_instance_latency_ewma_seconds",
            "The balancer's peak-EWMA latency estimate of the instance (sampled ones only).",
            labels=["service", "instance"],
        )
        router = self.router() if self.router is not None else None
        if router is not None:
            now = router.clock()
            for (app, instance_id), load in list(router.loads.items()):
                labels = [app.lower(), instance_id]
                outstanding.add_metric(labels, load.outstanding)
                estimate = load.latency_s(now, router.decay_s)
                if estimate is not None:
                    latency.add_metric(labels, estimate)
        yield outstanding
        yield latency


LOAD_COLLECTOR = LoadCollector()
REGISTRY.register(LOAD_COLLECTOR)
