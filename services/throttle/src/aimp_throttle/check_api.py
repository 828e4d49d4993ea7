"""``POST /v1/check`` and ``/v1/release`` for callers other than the gateway, and usage.

A check decides one call exactly as the gateway would (same rules, same Redis
keys, one script call): 200 when admitted, 429 problem+json with
``Retry-After`` and the RateLimit headers when a limit refuses, naming it;
503 when Redis is unreachable and a limit fails closed. A caller may check
for itself (and a service it may invoke); operators and admins for anyone.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from aimp_core.auth import Principal, can_invoke, can_operate, require
from aimp_core.ratelimit.responses import refusal, verdict_headers

from .auth import Reader, current_principal
from .deps import CheckerDep
from .domain import check_client_id
from .schemas import ClientId, ServiceName

router = APIRouter(tags=["throttle checks"])


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    client_id: ClientId = Field(description="The client making the call.")
    service: ServiceName = Field(description="The service it calls.")


class LimitLeft(BaseModel):
    name: str = Field(description="The limit: a policy id, plan:<id> or client-rate.")
    source: str
    rate_remaining: int = Field(description="Calls that fit the rate right now; -1: no rate.")
    day_remaining: int = Field(description="Calls left today (UTC); -1: no daily quota.")
    month_remaining: int = Field(description="Calls left this month; -1: no monthly quota.")
    concurrency_remaining: int = Field(description="Free call slots; -1: no cap.")


class CheckResult(BaseModel):
    allowed: bool
    mode: str = Field(description="redis: exact; local: Redis unreachable, this process's share.")
    limits: list[LimitLeft]
    lease_id: str | None = Field(
        description="Held while the call runs when a concurrency cap applies: POST /v1/release "
        "it when the call ends (it expires by itself after lease_ttl_s)."
    )
    lease_ttl_s: float


class ReleaseRequest(CheckRequest):
    lease_id: str = Field(min_length=1, max_length=200)


def _may_check(principal: Principal, client_id: str, service: str) -> None:
    if can_operate(principal.roles):
        return
    require(
        principal.client_id == client_id and can_invoke(principal.roles, service),
        f"checking limits for client '{client_id}' on '{service}' (a client may check its own "
        "calls to services it may invoke; operators and admins any)",
    )


Caller = Annotated[Principal, Depends(current_principal)]


@router.post(
    "/v1/check",
    summary="Decide one call against every applicable limit (consumes it when admitted)",
    responses={
        429: {"description": "A limit refused the call"},
        503: {"description": "Redis down, fails closed"},
    },
)
async def check(
    body: CheckRequest, caller: Caller, checker: CheckerDep, response: Response
) -> CheckResult:
    _may_check(caller, body.client_id, body.service)
    verdict = await checker.check(body.client_id, body.service)
    if not verdict.allowed:
        raise refusal(verdict, body.client_id)
    response.headers.update(verdict_headers(verdict))
    return CheckResult(
        allowed=True,
        mode=verdict.mode,
        limits=[
            LimitLeft(
                name=a.name,
                source=a.source,
                rate_remaining=n.rate_remaining,
                day_remaining=n.day_remaining,
                month_remaining=n.month_remaining,
                concurrency_remaining=n.concurrency_remaining,
            )
            for a, n in zip(verdict.compiled.applied, verdict.numbers, strict=True)
        ],
        lease_id=verdict.lease_id or None,
        lease_ttl_s=checker.limiter.lease_ttl_us / 1_000_000,
    )


@router.post("/v1/release", status_code=204, summary="End a checked call: free its lease")
async def release(body: ReleaseRequest, caller: Caller, checker: CheckerDep) -> Response:
    _may_check(caller, body.client_id, body.service)
    await checker.release(body.client_id, body.service, body.lease_id)
    return Response(status_code=204)


class LimitUsagePublic(BaseModel):
    name: str
    source: str
    rate: float
    burst: int
    rate_remaining: int
    quota_day: int | None
    used_day: int
    quota_month: int | None
    used_month: int
    concurrency: int | None
    in_flight: int | None


class UsagePublic(BaseModel):
    client_id: str
    service: str | None
    limits: list[LimitUsagePublic]


@router.get(
    "/admin/throttle/usage/{client_id}",
    summary="A client's limits and how much of each it has used (today, this month, in flight)",
)
async def usage(
    client_id: str,
    _caller: Reader,
    checker: CheckerDep,
    service: Annotated[
        ServiceName | None,
        Query(description="Limits of calls to this service; missing: the client's own limits."),
    ] = None,
) -> UsagePublic:
    check_client_id(client_id)
    found = await checker.usage(client_id, service)
    return UsagePublic(
        client_id=client_id,
        service=service,
        limits=[
            LimitUsagePublic(
                name=u.applied.name,
                source=u.applied.source,
                rate=u.applied.fields.rate,
                burst=u.applied.fields.burst,
                rate_remaining=u.rate_remaining,
                quota_day=u.applied.fields.quota_day,
                used_day=u.used_day,
                quota_month=u.applied.fields.quota_month,
                used_month=u.used_month,
                concurrency=u.applied.fields.concurrency,
                in_flight=None if u.in_flight < 0 else u.in_flight,
            )
            for u in found
        ],
    )
