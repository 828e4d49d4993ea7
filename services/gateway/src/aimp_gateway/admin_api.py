"""Admin routes: OAuth2 clients (role ``admin``; secrets shown once, stored hashed) and
the routing state (``admin`` or ``operator``)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from aimp_core.auth import Principal, can_administer, can_read_admin, require
from aimp_core.errors import Conflict, NotFound
from aimp_gateway.passwords import hash_secret
from aimp_gateway.schemas import (
    ClientCreate,
    ClientCreated,
    ClientPublic,
    DiscoveryState,
    RoutingPublic,
    ServiceRouting,
)
from aimp_gateway.state import GatewayDep
from aimp_gateway.store import ClientExists, ClientRecord

router = APIRouter(prefix="/admin", tags=["admin"])


async def _admin(request: Request, gw: GatewayDep) -> Principal:
    principal = gw.plane.verifier.verify(request.headers.get("authorization"))
    require(can_administer(principal.roles), "administering clients")
    return principal


Admin = Annotated[Principal, Depends(_admin)]


async def _reader(request: Request, gw: GatewayDep) -> Principal:
    principal = gw.plane.verifier.verify(request.headers.get("authorization"))
    require(can_read_admin(principal.roles), "reading the gateway's state")
    return principal


Reader = Annotated[Principal, Depends(_reader)]


def _public(record: ClientRecord) -> ClientPublic:
    return ClientPublic(
        client_id=record.client_id,
        roles=list(record.roles),
        created_at=record.created_at,
        disabled=record.disabled,
    )


@router.post(
    "/clients", status_code=201, summary="Create a client; its secret is returned only here"
)
def create_client(body: ClientCreate, gw: GatewayDep, _: Admin) -> ClientCreated:
    secret = secrets.token_urlsafe(32)
    try:
        gw.store.add_client(body.client_id, hash_secret(secret), body.roles)
    except ClientExists:
        raise Conflict(
            f"client '{body.client_id}' already exists; pick another id or delete it first"
        ) from None
    return ClientCreated(client_id=body.client_id, client_secret=secret, roles=body.roles)


@router.get("/clients", summary="List clients (never their secrets)")
def list_clients(gw: GatewayDep, _: Admin) -> list[ClientPublic]:
    return [_public(r) for r in gw.store.list_clients()]


@router.delete(
    "/clients/{client_id}",
    status_code=204,
    summary="Delete a client; tokens it already holds expire within their lifetime",
)
def delete_client(client_id: str, gw: GatewayDep, _: Admin) -> Response:
    if not gw.store.delete_client(client_id):
        raise NotFound(f"client '{client_id}' does not exist; GET /admin/clients lists them")
    return Response(status_code=204)


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
