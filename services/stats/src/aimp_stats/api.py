"""HTTP routes of the stats service: usage, time series, top, revisions, metering, calls.

Every route needs a token with role operator or admin. ``since`` (inclusive) and
``until`` (exclusive) take unix seconds or ISO-8601; see :mod:`aimp_stats.ranges`
for how a range is answered (exact to the second while raw calls are kept, else
rounded down to the minute, hour or day buckets that still hold it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, Path, Query, Request

from aimp_core.errors import BadRequest, NotFound

from .auth import Reader
from .buckets import Aggregate, BucketKey
from .domain import usage_filter
from .ranges import parse_step, series_points
from .schemas import (
    CallPublic,
    CallsPublic,
    ClientMeter,
    MeteringPublic,
    PointPublic,
    RevisionItem,
    RevisionsPublic,
    SeriesPublic,
    ServiceMeter,
    Stats,
    TopItem,
    TopPublic,
    UsagePublic,
)
from .store import EventStore

router = APIRouter(tags=["usage"])


def _store(request: Request) -> EventStore:
    store: EventStore = request.app.state.store
    return store


Store = Annotated[EventStore, Depends(_store)]
TimeParam = Annotated[
    str | None,
    Query(
        max_length=64,
        description="Unix seconds (e.g. 1700000000) or ISO-8601 (e.g. 2024-01-31T12:00:00Z; "
        "without an offset it means UTC).",
    ),
]
NameParam = Annotated[str | None, Query(max_length=128)]


@router.get(
    "/v1/usage",
    summary="Calls, errors, throttled calls and latency percentiles",
    description="Counts calls with ``since <= ts < until``; every filter is optional. "
    "Counts are exact; p50/p99 are within 1 % of the exact nearest-rank values.",
)
async def get_usage(
    _caller: Reader,
    store: Store,
    service: NameParam = None,
    client_id: NameParam = None,
    since: TimeParam = None,
    until: TimeParam = None,
) -> UsagePublic:
    usage = await asyncio.to_thread(store.usage, usage_filter(service, client_id, since, until))
    return UsagePublic(
        requests=usage.requests,
        errors=usage.errors,
        throttled=usage.throttled,
        p50_ms=usage.p50_ms,
        p99_ms=usage.p99_ms,
    )


@router.get(
    "/v1/timeseries",
    summary="Counts and percentiles per time step",
    description="Points at multiples of ``step`` (60s, 5m, 1h, 1d, ...; UTC), from since "
    "(default: 60 steps ago) to until (default: now), rounded down to the step.",
)
async def get_timeseries(
    _caller: Reader,
    store: Store,
    service: NameParam = None,
    client_id: NameParam = None,
    since: TimeParam = None,
    until: TimeParam = None,
    step: Annotated[str, Query(max_length=16)] = "60s",
) -> SeriesPublic:
    step_s = parse_step(step)
    flt = usage_filter(service, client_id, since, until)
    tier, start, end, groups = await asyncio.to_thread(store.series, flt, step_s)
    points = [
        PointPublic(t=t, **Stats.of(groups.get(t) or Aggregate()).model_dump())
        for t in series_points(start, end, step_s)
    ]
    return SeriesPublic(
        since=start, until=end, step_s=step_s, source=tier.name.lower(), points=points
    )


@router.get("/v1/top", summary="The busiest clients or services")
async def get_top(
    _caller: Reader,
    store: Store,
    by: Literal["client", "service"] = "client",
    since: TimeParam = None,
    until: TimeParam = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> TopPublic:
    flt = usage_filter(None, None, since, until)

    def name(key: BucketKey) -> Hashable:
        return key.client_id if by == "client" else key.service

    plan, groups = await asyncio.to_thread(store.aggregate, flt, name)
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1].requests, str(kv[0])))[:limit]
    items = [TopItem(name=str(n), **Stats.of(agg).model_dump()) for n, agg in ranked]
    return TopPublic(since=plan.since, until=plan.until, by=by, items=items)


@router.get(
    "/v1/revisions",
    summary="Per-revision comparison of one service (canaries)",
    description="Requests, errors, error rate and p50/p95/p99 per revision of the service.",
)
async def get_revisions(
    _caller: Reader,
    store: Store,
    service: Annotated[str, Query(min_length=1, max_length=128)],
    since: TimeParam = None,
    until: TimeParam = None,
) -> RevisionsPublic:
    flt = usage_filter(service, None, since, until)
    plan, groups = await asyncio.to_thread(store.aggregate, flt, lambda k: k.revision)
    revisions = [
        RevisionItem(revision=str(r), **Stats.of(agg).model_dump())
        for r, agg in sorted(groups.items(), key=lambda kv: str(kv[0]))
    ]
    return RevisionsPublic(since=plan.since, until=plan.until, service=service, revisions=revisions)


@router.get(
    "/v1/metering",
    summary="Calls and compute seconds per client (and service), for billing",
    description="compute_seconds is the sum of upstream_ms / 1000: time a pod worked on "
    "the client's calls. Without client_id every client is listed.",
)
async def get_metering(
    _caller: Reader,
    store: Store,
    client_id: NameParam = None,
    since: TimeParam = None,
    until: TimeParam = None,
) -> MeteringPublic:
    flt = usage_filter(None, client_id, since, until)
    plan, groups = await asyncio.to_thread(
        store.aggregate, flt, lambda k: (k.client_id, k.service), sketches=False
    )
    clients: dict[str, ClientMeter] = {}
    for key, agg in sorted(groups.items(), key=lambda kv: str(kv[0])):
        client, service = cast(tuple[str, str], key)
        meter = clients.get(client)
        if meter is None:
            meter = clients[client] = ClientMeter(
                client_id=client, calls=0, errors=0, throttled=0, compute_seconds=0.0,
                bytes_in=0, bytes_out=0, services=[],
            )  # fmt: skip
        meter.calls += agg.requests
        meter.errors += agg.errors
        meter.throttled += agg.throttled
        meter.compute_seconds += agg.compute_s
        meter.bytes_in += agg.bytes_in
        meter.bytes_out += agg.bytes_out
        meter.services.append(
            ServiceMeter(service=service, calls=agg.requests, compute_seconds=agg.compute_s)
        )
    return MeteringPublic(since=plan.since, until=plan.until, clients=list(clients.values()))


@router.get(
    "/v1/calls/{request_id}",
    summary="A recent call by its request id (x-request-id)",
    description="Raw calls are kept for AIMP_CALLS_RETENTION_S (24 h by default).",
)
async def get_call(
    _caller: Reader,
    store: Store,
    request_id: Annotated[str, Path(min_length=1, max_length=128)],
) -> CallPublic:
    call = await asyncio.to_thread(store.call_by_request_id, request_id)
    if call is None:
        raise NotFound(
            f"no call with request id {request_id!r} was stored in the retention window; "
            "check the id (the x-request-id response header) or whether it is older"
        )
    return CallPublic.model_validate(call.fields)


@router.get("/v1/calls", summary="Recent calls of one trace (traceparent's trace id)")
async def get_calls(
    _caller: Reader,
    store: Store,
    trace_id: Annotated[str | None, Query(max_length=64)] = None,
) -> CallsPublic:
    if not trace_id:
        raise BadRequest("trace_id is required: the 32 hex digits of the traceparent header")
    calls = await asyncio.to_thread(store.calls_by_trace_id, trace_id)
    return CallsPublic(calls=[CallPublic.model_validate(c.fields) for c in calls])
