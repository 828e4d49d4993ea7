"""HTTP routes of the stats service."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from .auth import Reader
from .domain import usage_filter
from .store import EventStore

router = APIRouter(tags=["usage"])


def _store(request: Request) -> EventStore:
    store: EventStore = request.app.state.store
    return store


Store = Annotated[EventStore, Depends(_store)]


class UsagePublic(BaseModel):
    """Usage over the selected calls (DESIGN.md's contract)."""

    requests: int = Field(description="Calls that match the filters.")
    errors: int = Field(description="Calls answered with a status of 500 or more.")
    throttled: int = Field(description="Calls answered 429 (rate limit or quota).")
    p50_ms: float | None = Field(description="Median latency, ms (nearest rank); null if no calls.")
    p99_ms: float | None = Field(description="99th percentile latency, ms; null if no calls.")


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
    "Needs a token with role operator or admin.",
)
async def get_usage(
    _caller: Reader,
    store: Store,
    service: NameParam = None,
    client_id: NameParam = None,
    since: TimeParam = None,
    until: TimeParam = None,
) -> UsagePublic:
    flt = usage_filter(service, client_id, since, until)
    usage = await asyncio.to_thread(store.usage, flt)
    return UsagePublic(
        requests=usage.requests,
        errors=usage.errors,
        throttled=usage.throttled,
        p50_ms=usage.p50_ms,
        p99_ms=usage.p99_ms,
    )
