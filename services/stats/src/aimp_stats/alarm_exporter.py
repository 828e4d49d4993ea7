"""Per-service alarm metrics as Prometheus gauges, so Prometheus rules judge the same numbers.

Each evaluator pass sets, for every service with calls in the last ``EXPORT_WINDOW_S``,
the values the alarm rules compare (from the same SQL, by the same functions): error
and throttled rate in percent of calls, p99 in ms and calls per second. A service
without calls in the window loses its error, throttled and p99 series (no data, as for
the evaluator) and reports 0 calls per second until it is forgotten after
``FORGET_AFTER_S``. Only the replica holding the evaluator lease exports them, so
Prometheus rules aggregate with ``max by (service)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from prometheus_client import Gauge

from .alarm_domain import ServiceWindow, service_value

#: The window of the exported values: Prometheus' usual 1-minute rate window.
EXPORT_WINDOW_S = 60.0
#: A silent service's qps series is dropped this long after its last call.
FORGET_AFTER_S = 3600.0

SERVICE_GAUGES = {
    "error_rate": Gauge(
        "aimp_stats_service_error_rate_percent",
        "Percent of a service's calls answered 5xx over the last minute (as alarms compute).",
        ["service"],
    ),
    "throttled_rate": Gauge(
        "aimp_stats_service_throttled_rate_percent",
        "Percent of a service's calls answered 429 over the last minute.",
        ["service"],
    ),
    "p99_ms": Gauge(
        "aimp_stats_service_p99_ms",
        "99th percentile latency of a service's calls over the last minute, ms.",
        ["service"],
    ),
    "qps": Gauge(
        "aimp_stats_service_qps", "A service's calls per second over the last minute.", ["service"]
    ),
}
EXPORTED_AT = Gauge(
    "aimp_stats_service_metrics_timestamp_seconds",
    "Unix time the per-service alarm metrics were last computed (by the evaluator leader).",
)


class ServiceExporter:
    """Keeps the per-service gauges in step with one window of calls."""

    def __init__(self) -> None:
        self._last_call: dict[str, float] = {}

    def update(self, now: float, windows: Mapping[str, ServiceWindow]) -> None:
        """Set the gauges for the services in ``windows`` (those with calls), clear others."""
        for service, current in windows.items():
            self._last_call[service] = now
            for metric, gauge in SERVICE_GAUGES.items():
                value = service_value(metric, current, EXPORT_WINDOW_S, 1)
                if value is None:
                    _remove(gauge, service)
                else:
                    gauge.labels(service).set(value)
        for service, last in list(self._last_call.items()):
            if service in windows:
                continue
            for metric, gauge in SERVICE_GAUGES.items():
                if metric != "qps":
                    _remove(gauge, service)
            if now - last > FORGET_AFTER_S:
                _remove(SERVICE_GAUGES["qps"], service)
                del self._last_call[service]
            else:
                SERVICE_GAUGES["qps"].labels(service).set(0.0)
        EXPORTED_AT.set(now)


def _remove(gauge: Gauge, service: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(service)
