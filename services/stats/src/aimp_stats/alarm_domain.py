"""Pure decisions of alarms: rule values, metric values, and the hold state machine.

An alert is one rule applied to one subject (a service, or a pod for pod metrics).
Each evaluation gives the subject's metric value, or ``None`` when there is no data
(no calls, no scrape, no GPU). The state machine, as Prometheus' ``for:`` clause:

- OK: the condition holds -> PENDING since now (or FIRING at once when hold is 0);
- PENDING: still holding for ``hold_s`` since it began -> FIRING (event ``firing``);
  no longer holding -> OK, silently;
- FIRING: no longer holding, or no data -> OK (event ``resolved``).

No data never holds, so an alert resolves when its subject goes quiet.
"""

from __future__ import annotations

import enum
import fnmatch
import math
from dataclasses import dataclass, replace
from typing import Literal

Metric = Literal[
    "error_rate",
    "p99_ms",
    "qps",
    "throttled_rate",
    "pod_cpu",
    "pod_memory",
    "gpu_util",
    "gpu_memory",
]
Comparison = Literal[">", ">=", "<", "<="]

#: Metrics over the calls of a service (from the request events in SQL), and their units.
SERVICE_METRICS: dict[str, str] = {
    "error_rate": "percent of calls answered 5xx",
    "p99_ms": "99th percentile latency, ms",
    "qps": "calls per second",
    "throttled_rate": "percent of calls answered 429",
}
#: Metrics of each pod (scraped from its /metrics), and their units.
POD_METRICS: dict[str, str] = {
    "pod_cpu": "percent of one CPU core",
    "pod_memory": "resident memory, MiB",
    "gpu_util": "percent GPU utilisation (busiest GPU)",
    "gpu_memory": "percent of GPU memory used",
}
MIB = 1024 * 1024


@dataclass(frozen=True)
class Rule:
    """One alarm rule as stored (see the API schemas for each field's meaning)."""

    id: int
    name: str
    metric: Metric
    service: str
    pod: str
    comparison: Comparison
    threshold: float
    hold_minutes: float
    window_s: float
    min_requests: int
    webhook_url: str | None
    enabled: bool = True

    @property
    def hold_s(self) -> float:
        return self.hold_minutes * 60.0

    @property
    def on_pods(self) -> bool:
        return self.metric in POD_METRICS


class Phase(enum.StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"


@dataclass(frozen=True)
class AlertState:
    """Where one alert is: its phase, since when, and the last value seen."""

    phase: Phase = Phase.OK
    since: float = 0.0
    value: float | None = None


@dataclass(frozen=True)
class Transition:
    """A change worth telling: ``firing`` or ``resolved``."""

    kind: Literal["firing", "resolved"]
    at: float
    value: float | None
    #: When the condition began to hold (the start of PENDING).
    active_since: float


def holds(value: float | None, comparison: Comparison, threshold: float) -> bool:
    """Whether ``value`` meets the rule's condition; no data never does."""
    if value is None or math.isnan(value):
        return False
    if comparison == ">":
        return value > threshold
    if comparison == ">=":
        return value >= threshold
    if comparison == "<":
        return value < threshold
    return value <= threshold


def step(
    state: AlertState, value: float | None, holding: bool, now: float, hold_s: float
) -> tuple[AlertState, Transition | None]:
    """The next state of one alert after one evaluation at ``now``, and what to tell."""
    if state.phase is Phase.OK:
        if not holding:
            return replace(state, value=value), None
        state = AlertState(Phase.PENDING, now, value)
    if state.phase is Phase.PENDING:
        if not holding:
            return AlertState(Phase.OK, now, value), None
        if now - state.since >= hold_s:
            fired = Transition("firing", now, value, state.since)
            return AlertState(Phase.FIRING, state.since, value), fired
        return replace(state, value=value), None
    if holding:
        return replace(state, value=value), None
    return AlertState(Phase.OK, now, value), Transition("resolved", now, value, state.since)


def matches(selector: str, name: str) -> bool:
    """Shell-style selector (``*``, ``?``, ``[...]``) against a service or pod name."""
    return fnmatch.fnmatchcase(name, selector)


def is_pattern(selector: str) -> bool:
    return any(c in selector for c in "*?[")


# -- service metrics ---------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceWindow:
    """A service's calls within one window (from SQL)."""

    requests: int
    errors: int
    throttled: int
    p99_ms: float | None


def service_value(
    metric: str, window: ServiceWindow, window_s: float, min_requests: int
) -> float | None:
    """The metric over a window; ``None`` when too few calls to judge a ratio or latency."""
    if metric == "qps":
        return window.requests / window_s
    if window.requests < max(1, min_requests):
        return None
    if metric == "error_rate":
        return 100.0 * window.errors / window.requests
    if metric == "throttled_rate":
        return 100.0 * window.throttled / window.requests
    if metric == "p99_ms":
        return window.p99_ms
    raise ValueError(f"{metric} is not a service metric")


# -- pod metrics -------------------------------------------------------------------------


@dataclass(frozen=True)
class PodSample:
    """What one scrape of one pod's /metrics gave (``None``: the metric is not exposed)."""

    pod: str
    service: str
    at: float
    cpu_seconds: float | None = None
    resident_bytes: float | None = None
    #: Per GPU, 0..1 (Triton's ``nv_gpu_utilization``).
    gpu_utilization: tuple[float, ...] = ()
    gpu_memory_used_bytes: float | None = None
    gpu_memory_total_bytes: float | None = None


def pod_value(metric: str, previous: PodSample | None, current: PodSample) -> float | None:
    """A pod metric from the latest scrape (CPU needs the previous one for a rate)."""
    if metric == "pod_cpu":
        if previous is None or previous.cpu_seconds is None or current.cpu_seconds is None:
            return None
        elapsed = current.at - previous.at
        used = current.cpu_seconds - previous.cpu_seconds
        if elapsed <= 0 or used < 0:  # a restarted process resets its counter
            return None
        return 100.0 * used / elapsed
    if metric == "pod_memory":
        return None if current.resident_bytes is None else current.resident_bytes / MIB
    if metric == "gpu_util":
        return 100.0 * max(current.gpu_utilization) if current.gpu_utilization else None
    if metric == "gpu_memory":
        taken, size = current.gpu_memory_used_bytes, current.gpu_memory_total_bytes
        return None if taken is None or not size else 100.0 * taken / size
    raise ValueError(f"{metric} is not a pod metric")
