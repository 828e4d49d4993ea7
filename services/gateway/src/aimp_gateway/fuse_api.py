"""Admin route: every circuit breaker of this gateway process, with its state and rates."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from aimp_core.auth import Principal, can_read_admin, require
from aimp_gateway.breaker import BreakerState
from aimp_gateway.fuses import BreakerRow
from aimp_gateway.state import GatewayDep

router = APIRouter(prefix="/admin", tags=["admin"])


async def _reader(request: Request, gw: GatewayDep) -> Principal:
    principal = gw.plane.verifier.verify(request.headers.get("authorization"))
    require(can_read_admin(principal.roles), "reading the gateway's circuit breakers")
    return principal


Reader = Annotated[Principal, Depends(_reader)]


class BreakerPublic(BaseModel):
    """One circuit breaker as of the request."""

    service: str
    instance_id: str = Field(description="Empty for the service's own breaker.")
    scope: Literal["service", "instance"]
    state: BreakerState
    failure_rate_percent: float = Field(description="Failed calls in the current window.")
    slow_rate_percent: float = Field(description="Slow calls in the current window.")
    calls_in_window: int
    failed_calls: int
    slow_calls: int
    retry_after_s: float = Field(description="Seconds until an open breaker tries again.")
    trials_in_flight: int = Field(description="Half-open trial calls under way.")
    bulkhead_in_flight: int | None = Field(description="The service's calls in flight.")
    bulkhead_max: int | None = Field(description="Its bulkhead limit; null = unbounded.")
    retry_budget_left: float = Field(description="Retries the service's budget allows now.")


class BreakersPublic(BaseModel):
    """Breakers exist once a service has been called under a policy that has them."""

    config_version: int
    breakers: list[BreakerPublic]


def _public(row: BreakerRow) -> BreakerPublic:
    view = row.view
    return BreakerPublic(
        service=row.service,
        instance_id=row.instance_id,
        scope="instance" if row.instance_id else "service",
        state=view.state,
        failure_rate_percent=view.failure_rate_percent,
        slow_rate_percent=view.slow_rate_percent,
        calls_in_window=view.calls,
        failed_calls=view.failed_calls,
        slow_calls=view.slow_calls,
        retry_after_s=view.retry_after_s,
        trials_in_flight=view.trials_in_flight,
        bulkhead_in_flight=row.bulkhead_in_flight,
        bulkhead_max=row.bulkhead_max,
        retry_budget_left=row.retry_balance,
    )


@router.get(
    "/breakers",
    summary="Every circuit breaker in this gateway: state, rates, calls in window, retry-after",
)
async def list_breakers(gw: GatewayDep, _: Reader) -> BreakersPublic:
    plane = gw.plane
    return BreakersPublic(
        config_version=plane.config.snapshot.version,
        breakers=[_public(row) for row in plane.fuses.rows()],
    )
