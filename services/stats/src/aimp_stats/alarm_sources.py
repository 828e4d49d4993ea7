"""Where alarm values come from: service windows from SQL, pod samples from /metrics.

Service metrics go through the stats store's own read side (the aggregates
``GET /v1/usage`` answers from), all services of a window in one query. Pod metrics
come from scraping each UP registry instance at ``<instance>/metrics`` (or at its
``aimp.metrics_url`` metadata): ``process_cpu_seconds_total`` and
``process_resident_memory_bytes`` (the process behind that URL; every aimp process and
the sidecars expose them) and Triton's ``nv_gpu_utilization``,
``nv_gpu_memory_used_bytes`` and ``nv_gpu_memory_total_bytes`` where a GPU is present.
A metric a pod does not expose gives no value, so its rules simply never fire there
(e.g. GPU rules without a GPU).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aimp_core.registry_client import EurekaClient

from .alarm_domain import PodSample, ServiceWindow
from .domain import UsageFilter
from .store import EventStore

log = logging.getLogger(__name__)

#: Instance metadata naming a pod's metrics URL when it is not ``<instance>/metrics``.
META_METRICS_URL = "aimp.metrics_url"
#: The Prometheus samples read from a pod, by the PodSample field they fill.
CPU_SECONDS = "process_cpu_seconds_total"
RESIDENT_BYTES = "process_resident_memory_bytes"
GPU_UTILIZATION = "nv_gpu_utilization"
GPU_MEMORY_USED = "nv_gpu_memory_used_bytes"
GPU_MEMORY_TOTAL = "nv_gpu_memory_total_bytes"
POD_SAMPLE_NAMES = (CPU_SECONDS, RESIDENT_BYTES, GPU_UTILIZATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL)


class ServiceMetrics:
    """Per-service call counts and p99 over a window, read through the stats store."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def windows(self, since: float, until: float, now: float) -> dict[str, ServiceWindow]:
        """``{service: its calls in [since, until)}`` for every service with calls there."""
        _, groups = self.store.aggregate(
            UsageFilter(since=since, until=until), lambda key: key.service, now=now
        )
        return {
            str(service): ServiceWindow(
                agg.requests, agg.errors, agg.throttled, agg.sketch.quantile(99)
            )
            for service, agg in groups.items()
            if agg.requests
        }


@dataclass(frozen=True)
class Target:
    """One pod to scrape."""

    pod: str
    service: str
    url: str


async def registry_targets(client: EurekaClient) -> list[Target]:
    """Every UP instance in the registry, with the URL of its metrics."""
    targets = []
    for instance in await client.applications():
        if instance.status != "UP":
            continue
        url = instance.metadata.get(META_METRICS_URL) or f"{instance.base_url}/metrics"
        targets.append(Target(instance.instance_id, instance.service, url))
    return targets


def parse_sample(text: str, pod: str, service: str, at: float) -> PodSample:
    """The pod metrics in one Prometheus text exposition (missing ones stay ``None``)."""
    found: dict[str, list[float]] = {name: [] for name in POD_SAMPLE_NAMES}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in found:
                found[sample.name].append(float(sample.value))

    def total(name: str) -> float | None:
        return sum(found[name]) if found[name] else None

    return PodSample(
        pod=pod,
        service=service,
        at=at,
        cpu_seconds=total(CPU_SECONDS),
        resident_bytes=total(RESIDENT_BYTES),
        gpu_utilization=tuple(found[GPU_UTILIZATION]),
        gpu_memory_used_bytes=total(GPU_MEMORY_USED),
        gpu_memory_total_bytes=total(GPU_MEMORY_TOTAL),
    )


class PodScraper:
    """Scrapes targets concurrently, keeping each pod's previous sample for CPU rates."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.previous: dict[str, PodSample] = {}

    async def scrape(self, targets: list[Target]) -> dict[str, tuple[PodSample | None, PodSample]]:
        """``{pod: (previous sample, this sample)}`` for every target that answered."""
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            results = await asyncio.gather(*(self._one(http, t) for t in targets))
        out = {}
        for sample in results:
            if sample is not None:
                out[sample.pod] = (self.previous.get(sample.pod), sample)
                self.previous[sample.pod] = sample
        for gone in set(self.previous) - {t.pod for t in targets}:
            del self.previous[gone]
        return out

    async def _one(self, http: httpx.AsyncClient, target: Target) -> PodSample | None:
        try:
            resp = await http.get(target.url)
            resp.raise_for_status()
            return parse_sample(resp.text, target.pod, target.service, time.time())
        except (httpx.HTTPError, ValueError) as exc:
            log.info("pod %s metrics not scraped: %s: %s", target.pod, type(exc).__name__, exc)
            return None
