"""The registry's Prometheus metrics: instances by app and status, and operation counts."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge

INSTANCES = Gauge(
    "aimp_registry_instances",
    "Registered instances, by application and published status.",
    ["app", "status"],
)
OPERATIONS = Counter(
    "aimp_registry_operations_total",
    "Registry operations: register, renew, cancel, evict, status and metadata changes, "
    "by outcome (ok, not_found).",
    ["operation", "outcome"],
)


def count(operation: str, outcome: str = "ok", amount: int = 1) -> None:
    OPERATIONS.labels(operation, outcome).inc(amount)


def publish_instances(counts: Mapping[tuple[str, str], int]) -> None:
    """Replace the gauge's series with ``counts`` so that gone apps and statuses vanish."""
    INSTANCES.clear()
    for (app, status), value in counts.items():
        INSTANCES.labels(app, status).set(value)
