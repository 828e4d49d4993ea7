"""Aggregates of calls (pure): what one bucket row holds, and how events fold into them.

A bucket is keyed by (start, service, revision, client_id, status class) where the
status class is ``status // 100`` (2 for 2xx, 5 for 5xx); it holds the number of
calls, how many were throttled (429), sums of latency and upstream time (compute
seconds for metering) and bytes, and a :class:`~aimp_stats.sketch.LatencySketch`.
Aggregates add up exactly (the sketch merges exactly), so minute buckets, hour
buckets, day buckets and raw calls combine into any answer.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from aimp_core.events import RequestEvent

from .domain import ERROR_STATUS_MIN, THROTTLED_STATUS
from .ranges import Tier, floor_to
from .sketch import LatencySketch


class BucketKey(NamedTuple):
    start: int
    service: str
    revision: str
    client_id: str
    status_class: int


@dataclass
class Aggregate:
    """Sums over some calls, plus their latency sketch."""

    requests: int = 0
    throttled: int = 0
    latency_ms_sum: float = 0.0
    upstream_ms_sum: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    sketch: LatencySketch = field(default_factory=LatencySketch)
    #: Calls answered with a status of 500 or more (derived from status classes).
    errors: int = 0

    def add_event(self, event: RequestEvent) -> None:
        self.requests += 1
        if event.status == THROTTLED_STATUS:
            self.throttled += 1
        if event.status >= ERROR_STATUS_MIN:
            self.errors += 1
        self.latency_ms_sum += event.latency_ms
        self.upstream_ms_sum += event.upstream_ms
        self.bytes_in += event.bytes_in
        self.bytes_out += event.bytes_out
        self.sketch.add(event.latency_ms)

    def merge(self, other: Aggregate) -> None:
        self.requests += other.requests
        self.throttled += other.throttled
        self.errors += other.errors
        self.latency_ms_sum += other.latency_ms_sum
        self.upstream_ms_sum += other.upstream_ms_sum
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.sketch.merge(other.sketch)

    @property
    def compute_s(self) -> float:
        """Seconds spent waiting on upstream pods: what metering bills."""
        return self.upstream_ms_sum / 1000.0


def key_of(event: RequestEvent, tier: Tier) -> BucketKey:
    return BucketKey(
        floor_to(event.ts, tier.seconds),
        event.service,
        event.revision,
        event.client_id,
        event.status // 100,
    )


def fold(events: Iterable[RequestEvent], tier: Tier) -> dict[BucketKey, Aggregate]:
    """The bucket rows of ``tier`` that ``events`` add to, with what they add."""
    out: dict[BucketKey, Aggregate] = {}
    for event in events:
        key = key_of(event, tier)
        agg = out.get(key)
        if agg is None:
            agg = out[key] = Aggregate()
        agg.add_event(event)
    return out


def coarsen(minutes: dict[BucketKey, Aggregate], tier: Tier) -> dict[BucketKey, Aggregate]:
    """Minute aggregates merged into ``tier``'s buckets (the inputs are left unchanged)."""
    out: dict[BucketKey, Aggregate] = {}
    for key, agg in minutes.items():
        coarse = key._replace(start=floor_to(key.start, tier.seconds))
        into = out.get(coarse)
        if into is None:
            into = out[coarse] = Aggregate()
        into.merge(agg)
    return out


def group(
    rows: Iterable[tuple[BucketKey, Aggregate]], by: Callable[[BucketKey], Hashable]
) -> dict[Hashable, Aggregate]:
    """Merge aggregates whose keys map to the same group (consumes the aggregates)."""
    out: dict[Hashable, Aggregate] = {}
    for key, agg in rows:
        name = by(key)
        into = out.get(name)
        if into is None:
            out[name] = agg
        else:
            into.merge(agg)
    return out
