"""Public response schemas of the stats API (read-only: there is nothing to create)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from aimp_core.events import Outcome

from .buckets import Aggregate

LATENCY_NOTE = "nearest rank, within 1 % (the latency sketch's relative error); null if no calls"


class UsagePublic(BaseModel):
    """Usage over the selected calls (DESIGN.md's contract)."""

    requests: int = Field(description="Calls that match the filters.")
    errors: int = Field(description="Calls answered with a status of 500 or more.")
    throttled: int = Field(description="Calls answered 429 (rate limit or quota).")
    p50_ms: float | None = Field(description=f"Median latency, ms; {LATENCY_NOTE}.")
    p99_ms: float | None = Field(description=f"99th percentile latency, ms; {LATENCY_NOTE}.")


class Stats(BaseModel):
    """Counts and latency percentiles of a group of calls."""

    requests: int
    errors: int
    throttled: int
    error_rate: float | None = Field(description="errors / requests; null if no calls.")
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    compute_seconds: float = Field(description="Sum of upstream time (upstream_ms / 1000).")

    @classmethod
    def of(cls, agg: Aggregate) -> Stats:
        n = agg.requests
        return cls(
            requests=n,
            errors=agg.errors,
            throttled=agg.throttled,
            error_rate=agg.errors / n if n else None,
            p50_ms=agg.sketch.quantile(50),
            p95_ms=agg.sketch.quantile(95),
            p99_ms=agg.sketch.quantile(99),
            mean_ms=agg.latency_ms_sum / n if n else None,
            compute_seconds=agg.compute_s,
        )


class Range(BaseModel):
    since: float = Field(description="Start of the range answered (unix s), after rounding.")
    until: float = Field(description="End of the range answered (unix s, exclusive).")


class PointPublic(Stats):
    t: int = Field(description="Start of the step (unix seconds, UTC, a multiple of step_s).")


class SeriesPublic(Range):
    step_s: int
    source: str = Field(description="Buckets the points were summed from: minute, hour or day.")
    points: list[PointPublic]


class TopItem(Stats):
    name: str = Field(description="The client_id or service.")


class TopPublic(Range):
    by: str
    items: list[TopItem] = Field(description="Most requests first.")


class RevisionItem(Stats):
    revision: str = Field(description="Revision name ('' for calls that reached no pod).")


class RevisionsPublic(Range):
    service: str
    revisions: list[RevisionItem]


class ServiceMeter(BaseModel):
    service: str
    calls: int
    compute_seconds: float


class ClientMeter(BaseModel):
    """What one client used, ready for billing."""

    client_id: str
    calls: int = Field(description="Every call the gateway counted for the client.")
    errors: int = Field(description="Calls answered 5xx (usually not billed).")
    throttled: int = Field(description="Calls answered 429 (usually not billed).")
    compute_seconds: float = Field(description="Sum of upstream_ms / 1000 over the calls.")
    bytes_in: int
    bytes_out: int
    services: list[ServiceMeter]


class MeteringPublic(Range):
    clients: list[ClientMeter]


class CallPublic(BaseModel):
    """One call as the gateway reported it, and when stats stored it."""

    event_id: str
    ts: float
    stored_at: float
    trace_id: str
    request_id: str
    client_id: str
    service: str
    revision: str
    instance_id: str
    status: int
    latency_ms: float
    upstream_ms: float
    bytes_in: int
    bytes_out: int
    outcome: Outcome


class CallsPublic(BaseModel):
    calls: list[CallPublic]
