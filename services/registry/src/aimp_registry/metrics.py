"""The registry's Prometheus metrics: instances, operations, self-preservation,
the change stream, replication and persistence."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge

from aimp_registry.preservation import Preservation

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


SELF_PRESERVATION = Gauge(
    "aimp_registry_self_preservation",
    "1 while self-preservation suspends eviction (renewals below the threshold), else 0.",
)
RENEWALS_LAST_WINDOW = Gauge(
    "aimp_registry_renewals_last_window",
    "Renewals received in the last window (one minute by default), replicated ones included.",
)
RENEWAL_THRESHOLD = Gauge(
    "aimp_registry_renewal_threshold",
    "Renewals per window below which self-preservation engages (expected x ratio).",
)
STREAM_READERS = Gauge("aimp_registry_stream_readers", "Readers connected to GET /eureka/stream.")
STREAM_DROPPED = Counter(
    "aimp_registry_stream_dropped_total",
    "Stream readers disconnected because their queue of unsent changes overflowed.",
)
REPLICATION = Counter(
    "aimp_registry_replication_total",
    "Replication calls to peers, by peer, action and outcome "
    "(ok, not_found, conflict, failed, dropped).",
    ["peer", "action", "outcome"],
)
REPLICATION_QUEUE = Gauge(
    "aimp_registry_replication_queue", "Replication tasks waiting per peer.", ["peer"]
)
PERSISTED_VERSION = Gauge(
    "aimp_registry_persisted_version", "The registry version the database holds for sure."
)


def publish_preservation(state: Preservation) -> None:
    SELF_PRESERVATION.set(1 if state.active else 0)
    RENEWALS_LAST_WINDOW.set(state.renewals)
    RENEWAL_THRESHOLD.set(state.threshold)
