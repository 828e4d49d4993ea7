"""Admin routes: the routing state, the roles and the signing keys (reading needs a
read-admin role, rotating the key ``admin``). Clients and users are in
:mod:`aimp_gateway.identity_api`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from aimp_core.auth import (
    INVOKE_ROLE_DESCRIPTION,
    ROLE_DESCRIPTIONS,
    Principal,
    can_manage_keys,
    can_read_admin,
    require,
)
from aimp_core.errors import Conflict, request_id_of
from aimp_gateway.keys import RotationUnavailable
from aimp_gateway.schemas import (
    DiscoveryState,
    KeyPublic,
    RolePublic,
    RoutingPublic,
    ServiceRouting,
)
from aimp_gateway.state import Gateway, GatewayDep

router = APIRouter(prefix="/admin", tags=["admin"])


async def _reader(request: Request, gw: GatewayDep) -> Principal:
    principal = gw.plane.verifier.verify(request.headers.get("authorization"))
    require(can_read_admin(principal.roles), "reading the gateway's state")
    return principal


Reader = Annotated[Principal, Depends(_reader)]


async def _key_admin(request: Request, gw: GatewayDep) -> Principal:
    principal = gw.plane.verifier.verify(request.headers.get("authorization"))
    require(can_manage_keys(principal.roles), "rotating the signing key")
    return principal


KeyAdmin = Annotated[Principal, Depends(_key_admin)]


@router.get(
    "/routing",
    summary="Discovery mode and every UP instance's routing state (ejections included)",
)
async def routing_state(gw: GatewayDep, _: Reader) -> RoutingPublic:
    discovery = gw.discovery
    return RoutingPublic(
        discovery=DiscoveryState(
            mode=discovery.mode,
            connected=discovery.connected,
            fresh=discovery.fresh,
            registry=discovery.client.base_url,
        ),
        services={
            name: ServiceRouting.model_validate(state)
            for name, state in gw.plane.router.describe().items()
        },
    )


# -- roles and keys --------------------------------------------------------------------------


@router.get("/roles", summary="Every role and what it allows")
def list_roles(_: Reader) -> list[RolePublic]:
    roles = [RolePublic(name=n, description=d) for n, d in ROLE_DESCRIPTIONS.items()]
    return [*roles, RolePublic(name="invoke:<service>", description=INVOKE_ROLE_DESCRIPTION)]


def _keys_public(gw: Gateway) -> list[KeyPublic]:
    return [
        KeyPublic(kid=p.kid, state=p.state.value, created_at=p.created_at, drop_at=p.drop_at)
        for p in gw.identity.ring.plans()
    ]


@router.get("/keys", summary="Signing keys: the active one and retired ones still published")
def list_keys(gw: GatewayDep, _: Reader) -> list[KeyPublic]:
    return _keys_public(gw)


@router.post(
    "/keys/rotate",
    summary="Create a new signing key; old keys verify until every token they signed expired",
)
def rotate_key(request: Request, gw: GatewayDep, actor: KeyAdmin) -> list[KeyPublic]:
    before = gw.identity.ring.active.kid
    try:
        after = gw.identity.ring.rotate().kid
    except RotationUnavailable as exc:
        raise Conflict(f"{exc}; rotation needs a writable key directory") from None
    gw.audit.record(
        actor=actor.subject,
        action="key.rotate",
        target=f"keys/{after}",
        request_id=request_id_of(request),
        before={"active": before},
        after={"active": after},
    )
    return _keys_public(gw)
