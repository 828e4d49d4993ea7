"""HTTP routes of plans (named limits per client) and of which client is on which plan."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from aimp_core.errors import BadRequest, Conflict, NotFound

from .auth import Administrator, Reader
from .deps import Plans, Publisher
from .domain import check_client_id, check_plan_id
from .plan_store import PlanInUse, UnknownPlan
from .schemas import PlanCreate, PlanList, PlanPublic

PLANS = "/admin/throttle/plans"
CLIENTS = "/admin/throttle/clients"

router = APIRouter(tags=["throttle plans"])


def _plan_id(plan_id: str) -> str:
    return check_plan_id(plan_id)


def _client_id(client_id: str) -> str:
    return check_client_id(client_id)


PlanId = Annotated[str, Depends(_plan_id)]
ClientIdPath = Annotated[str, Depends(_client_id)]


def _no_plan(plan_id: str) -> NotFound:
    return NotFound(
        f"no plan {plan_id!r}; GET {PLANS} lists them, PUT {PLANS}/{plan_id} creates it"
    )


@router.get(PLANS, summary="List every plan")
async def list_plans(_caller: Reader, plans: Plans) -> PlanList:
    found = await asyncio.to_thread(plans.list_all)
    return PlanList(plans=[PlanPublic.of(p, n) for p, n in found])


@router.get(f"{PLANS}/{{plan_id}}", summary="Read one plan")
async def get_plan(_caller: Reader, plan_id: PlanId, plans: Plans) -> PlanPublic:
    found = await asyncio.to_thread(plans.get, plan_id)
    if found is None:
        raise _no_plan(plan_id)
    return PlanPublic.of(*found)


@router.put(
    f"{PLANS}/{{plan_id}}",
    summary="Create (201) or replace (200) a plan; clients on it get its limits within 1 s",
    responses={201: {"description": "Created", "model": PlanPublic}},
)
async def put_plan(
    _caller: Administrator,
    plan_id: PlanId,
    body: PlanCreate,
    plans: Plans,
    publisher: Publisher,
    response: Response,
) -> PlanPublic:
    now = datetime.now(UTC)
    plan, created = await asyncio.to_thread(
        plans.put, plan_id, body.description, body.limits(), now
    )
    await publisher.publish_now()
    if created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"{PLANS}/{plan_id}"
    found = await asyncio.to_thread(plans.get, plan_id)
    return PlanPublic.of(plan, found[1] if found else 0)


@router.post(f"{PLANS}/{{plan_id}}/warmup", summary="Restart the plan's warm-up ramp now")
async def warm_up_plan(
    _caller: Administrator, plan_id: PlanId, plans: Plans, publisher: Publisher
) -> PlanPublic:
    found = await asyncio.to_thread(plans.get, plan_id)
    if found is None:
        raise _no_plan(plan_id)
    if found[0].limits.warmup_s is None:
        raise BadRequest(f"plan '{plan_id}' has no warm-up ramp; set warmup_s first")
    await asyncio.to_thread(plans.start_warmup, plan_id, datetime.now(UTC))
    await publisher.publish_now()
    found = await asyncio.to_thread(plans.get, plan_id)
    assert found is not None
    return PlanPublic.of(*found)


@router.delete(f"{PLANS}/{{plan_id}}", status_code=204, summary="Delete a plan no client is on")
async def delete_plan(
    _caller: Administrator, plan_id: PlanId, plans: Plans, publisher: Publisher
) -> Response:
    try:
        deleted = await asyncio.to_thread(plans.delete, plan_id)
    except PlanInUse as in_use:
        raise Conflict(
            f"{in_use.clients} client(s) are on plan '{plan_id}'; move them to another plan "
            f"(PUT {CLIENTS}/{{client_id}}) or remove them (DELETE {CLIENTS}/{{client_id}}) first"
        ) from None
    if not deleted:
        raise _no_plan(plan_id)
    await publisher.publish_now()
    return Response(status_code=204)


# -- assignments -------------------------------------------------------------------------


class Assignment(BaseModel):
    """The body of ``PUT /admin/throttle/clients/{client_id}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    plan: str = Field(description="The plan the client is on.")


class AssignmentPublic(BaseModel):
    client_id: str
    plan: str


class AssignmentList(BaseModel):
    clients: list[AssignmentPublic]


@router.get(CLIENTS, summary="Every client that is on a plan")
async def list_assignments(_caller: Reader, plans: Plans) -> AssignmentList:
    found = await asyncio.to_thread(plans.assignments)
    return AssignmentList(clients=[AssignmentPublic(client_id=c, plan=p) for c, p in found.items()])


@router.get(f"{CLIENTS}/{{client_id}}", summary="The plan a client is on")
async def get_assignment(
    _caller: Reader, client_id: ClientIdPath, plans: Plans
) -> AssignmentPublic:
    plan = await asyncio.to_thread(plans.assignment, client_id)
    if plan is None:
        raise NotFound(
            f"client '{client_id}' is on no plan (its own policies or the default limit "
            f'apply); PUT {CLIENTS}/{client_id} with {{"plan": ...}} assigns one'
        )
    return AssignmentPublic(client_id=client_id, plan=plan)


@router.put(
    f"{CLIENTS}/{{client_id}}",
    summary="Put a client on a plan (201 if it had none, else 200)",
    responses={201: {"description": "Assigned", "model": AssignmentPublic}},
)
async def assign(
    _caller: Administrator,
    client_id: ClientIdPath,
    body: Assignment,
    plans: Plans,
    publisher: Publisher,
    response: Response,
) -> AssignmentPublic:
    check_plan_id(body.plan)
    try:
        created = await asyncio.to_thread(plans.assign, client_id, body.plan, datetime.now(UTC))
    except UnknownPlan:
        raise BadRequest(
            f"plan '{body.plan}' does not exist; create it first (PUT {PLANS}/{body.plan})"
        ) from None
    await publisher.publish_now()
    if created:
        response.status_code = status.HTTP_201_CREATED
    return AssignmentPublic(client_id=client_id, plan=body.plan)


@router.delete(f"{CLIENTS}/{{client_id}}", status_code=204, summary="Take a client off its plan")
async def unassign(
    _caller: Administrator, client_id: ClientIdPath, plans: Plans, publisher: Publisher
) -> Response:
    if not await asyncio.to_thread(plans.unassign, client_id):
        raise NotFound(f"client '{client_id}' is on no plan")
    await publisher.publish_now()
    return Response(status_code=204)
