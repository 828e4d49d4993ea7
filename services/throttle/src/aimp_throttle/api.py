"""HTTP routes of throttle policies (DESIGN.md): create, read, update, delete, warm up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from aimp_core.errors import BadRequest, Conflict, NotFound

from .auth import Administrator, Reader
from .deps import Policies, Publisher
from .domain import check_policy_id, describe_scope
from .schemas import PolicyCreate, PolicyList, PolicyPublic
from .store import ScopeTaken

PREFIX = "/admin/throttle/policies"

router = APIRouter(prefix=PREFIX, tags=["throttle policies"])


def _policy_id(policy_id: str) -> str:
    return check_policy_id(policy_id)


PolicyId = Annotated[str, Depends(_policy_id)]


def _not_found(policy_id: str) -> NotFound:
    return NotFound(
        f"no throttle policy {policy_id!r}; GET {PREFIX} lists them, "
        f"PUT {PREFIX}/{policy_id} creates it"
    )


@router.get("", summary="List every policy")
async def list_policies(_caller: Reader, store: Policies) -> PolicyList:
    policies = await asyncio.to_thread(store.list_all)
    return PolicyList(policies=[PolicyPublic.of(p) for p in policies])


@router.get("/{policy_id}", summary="Read one policy")
async def get_policy(_caller: Reader, policy_id: PolicyId, store: Policies) -> PolicyPublic:
    policy = await asyncio.to_thread(store.get, policy_id)
    if policy is None:
        raise _not_found(policy_id)
    return PolicyPublic.of(policy)


@router.put(
    "/{policy_id}",
    summary="Create (201) or replace (200) a policy; every gateway applies it within 1 s",
    responses={
        201: {"description": "Created", "model": PolicyPublic},
        409: {"description": "Another policy already limits the same scope"},
    },
)
async def put_policy(
    _caller: Administrator,
    policy_id: PolicyId,
    body: PolicyCreate,
    store: Policies,
    publisher: Publisher,
    response: Response,
) -> PolicyPublic:
    scope = (body.client_id, body.service, body.per_client)
    try:
        policy, created = await asyncio.to_thread(
            store.put, policy_id, scope, body.limits(), datetime.now(UTC)
        )
    except ScopeTaken as taken:
        raise Conflict(
            f"policy '{taken.policy_id}' already limits {describe_scope(*scope)}; change that "
            f"policy (PUT {PREFIX}/{taken.policy_id}) or delete it first"
        ) from None
    await publisher.publish_now()
    if created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"{PREFIX}/{policy_id}"
    return PolicyPublic.of(policy)


@router.post(
    "/{policy_id}/warmup",
    summary="Restart the policy's warm-up ramp now (e.g. its service was just scaled)",
)
async def warm_up_policy(
    _caller: Administrator, policy_id: PolicyId, store: Policies, publisher: Publisher
) -> PolicyPublic:
    found = await asyncio.to_thread(store.get, policy_id)
    if found is None:
        raise _not_found(policy_id)
    if found.limits.warmup_s is None:
        raise BadRequest(
            f"policy '{policy_id}' has no warm-up ramp; set warmup_s (PUT {PREFIX}/{policy_id}) "
            "first"
        )
    policy = await asyncio.to_thread(store.start_warmup, policy_id, datetime.now(UTC))
    if policy is None:
        raise _not_found(policy_id)
    await publisher.publish_now()
    return PolicyPublic.of(policy)


@router.delete("/{policy_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a policy")
async def delete_policy(
    _caller: Administrator, policy_id: PolicyId, store: Policies, publisher: Publisher
) -> Response:
    if not await asyncio.to_thread(store.delete, policy_id):
        raise _not_found(policy_id)
    await publisher.publish_now()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
