"""Prometheus metrics: a per-service HTTP middleware and the /metrics body."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "aimp_http_requests_total",
    "HTTP requests served, by route template and status code.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "aimp_http_request_duration_seconds",
    "Time to serve an HTTP request, from first byte in to response start.",
    ["service", "method", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def metrics_body() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


#: Distinct (method, route, status) children kept per middleware; beyond it (a flood of
#: odd methods) children are looked up per call, as prometheus_client does anyway.
_MAX_CHILDREN = 4096


class MetricsMiddleware:
    """Count and time every request by its route template (never the raw path).

    The labelled children are resolved once per (method, route, status) and kept, so a
    call costs two dict lookups rather than two ``labels()`` calls (a lock and a label
    check each).
    """

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.service = service
        self._latency: dict[tuple[str, str], Any] = {}
        self._requests: dict[tuple[str, str, int], Any] = {}

    def _record(self, method: str, template: str, status: int, elapsed_s: float) -> None:
        timer = self._latency.get((method, template))
        if timer is None:
            timer = HTTP_LATENCY.labels(self.service, method, template)
            if len(self._latency) < _MAX_CHILDREN:
                self._latency[(method, template)] = timer
        timer.observe(elapsed_s)
        counter = self._requests.get((method, template, status))
        if counter is None:
            counter = HTTP_REQUESTS.labels(self.service, method, template, str(status))
            if len(self._requests) < _MAX_CHILDREN:
                self._requests[(method, template, status)] = counter
        counter.inc()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_and_record(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self._record(
                    scope["method"], template, message["status"], time.perf_counter() - start
                )
            await send(message)

        await self.app(scope, receive, send_and_record)
