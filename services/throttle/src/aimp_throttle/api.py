"""HTTP routes of the throttle service: the policy admin API (DESIGN.md)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from aimp_core.errors import NotFound

from .auth import Administrator, Reader
from .domain import check_policy_id
from .schemas import PolicyCreate, PolicyList, PolicyPublic
from .store import PolicyStore

PREFIX = "/admin/throttle/policies"

router = APIRouter(prefix=PREFIX, tags=["throttle policies"])


def _store(request: Request) -> PolicyStore:
    store: PolicyStore = request.app.state.store
    return store


def _policy_id(policy_id: str) -> str:
    return check_policy_id(policy_id)


Store = Annotated[PolicyStore, Depends(_store)]
PolicyId = Annotated[str, Depends(_policy_id)]


def _not_found(policy_id: str) -> NotFound:
    return NotFound(
        f"no throttle policy {policy_id!r}; GET {PREFIX} lists them, "
        f"PUT {PREFIX}/{policy_id} creates it"
    )


@router.get("", summary="List every policy")
async def list_policies(_caller: Reader, store: Store) -> PolicyList:
    policies = await asyncio.to_thread(store.list_all)
    return PolicyList(policies=[PolicyPublic.of(p) for p in policies])


@router.get("/{policy_id}", summary="Read one policy")
async def get_policy(_caller: Reader, policy_id: PolicyId, store: Store) -> PolicyPublic:
    policy = await asyncio.to_thread(store.get, policy_id)
    if policy is None:
        raise _not_found(policy_id)
    return PolicyPublic.of(policy)


@router.put(
    "/{policy_id}",
    summary="Create (201) or replace (200) a policy",
    responses={201: {"description": "Created", "model": PolicyPublic}},
)
async def put_policy(
    _caller: Administrator,
    policy_id: PolicyId,
    body: PolicyCreate,
    store: Store,
    response: Response,
) -> PolicyPublic:
    now = datetime.now(UTC)
    policy, created = await asyncio.to_thread(store.put, policy_id, body.model_dump(), now)
    if created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"{PREFIX}/{policy_id}"
    return PolicyPublic.of(policy)


@router.delete("/{policy_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a policy")
async def delete_policy(_caller: Administrator, policy_id: PolicyId, store: Store) -> Response:
    if not await asyncio.to_thread(store.delete, policy_id):
        raise _not_found(policy_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
