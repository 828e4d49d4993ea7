"""The gateway's long-lived parts, built once at start and shared by every route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from aimp_core.audit import AuditLog
from aimp_gateway.auth_wiring import Identity
from aimp_gateway.discovery import Discovery
from aimp_gateway.oauth import TokenEndpoint
from aimp_gateway.proxy import DataPlane
from aimp_gateway.settings import GatewaySettings
from aimp_gateway.store import Store


@dataclass(frozen=True)
class Gateway:
    settings: GatewaySettings
    store: Store
    token_endpoint: TokenEndpoint
    plane: DataPlane
    discovery: Discovery
    #: Keys, verifier, revocation and lockout (:mod:`aimp_gateway.auth_wiring`).
    identity: Identity
    #: Admin changes to clients, users and keys become aimp.audit.v1 events.
    audit: AuditLog


def _gateway(request: Request) -> Gateway:
    gw = request.app.state.gateway
    assert isinstance(gw, Gateway)
    return gw


GatewayDep = Annotated[Gateway, Depends(_gateway)]
