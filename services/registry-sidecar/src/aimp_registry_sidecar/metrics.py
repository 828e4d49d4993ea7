"""The sidecar's own Prometheus metrics (the per-route HTTP metrics come from aimp_core)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

IN_FLIGHT = Gauge("aimp_sidecar_in_flight", "Calls running upstream now.", ["service"])
QUEUED = Gauge("aimp_sidecar_queued", "Calls waiting for a free upstream slot.", ["service"])
REQUESTS = Counter(
    "aimp_sidecar_requests_total",
    "Proxied calls by the status the sidecar answered (including its own 401/403/503).",
    ["service", "status"],
)
LATENCY = Histogram(
    "aimp_sidecar_request_duration_seconds",
    "Time from a proxied call's arrival to its answer, queueing included.",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REGISTERED = Gauge(
    "aimp_sidecar_registered",
    "1 while the registry holds this instance (as far as the sidecar knows), else 0.",
    ["service"],
)
