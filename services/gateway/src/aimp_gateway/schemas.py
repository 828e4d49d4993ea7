"""Request and response bodies of the gateway's HTTP API (Create and Public kept apart)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from aimp_core.auth import is_valid_role

CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class ClientCreate(BaseModel):
    """``POST /admin/clients``: the new client's id and roles (the secret is generated)."""

    client_id: str = Field(pattern=CLIENT_ID_PATTERN, examples=["billing-app"])
    roles: list[str] = Field(min_length=1, examples=[["invoke:resnet"]])

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: list[str]) -> list[str]:
        for role in roles:
            if not is_valid_role(role):
                raise ValueError(
                    f"unknown role '{role}'; use admin, operator, invoker or invoke:<service>"
                )
        return sorted(set(roles))


class ClientCreated(BaseModel):
    """The new client, with its secret: shown once, stored only as a hash."""

    client_id: str
    client_secret: str
    roles: list[str]


class ClientPublic(BaseModel):
    """A client as listed: never its secret or hash."""

    client_id: str
    roles: list[str]
    created_at: datetime
    disabled: bool


class TokenResponse(BaseModel):
    """RFC 6749 §5.1."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the token type, not a secret
    expires_in: int
    scope: str


class TokenError(BaseModel):
    """RFC 6749 §5.2."""

    error: str
    error_description: str = ""


class ServerMetadata(BaseModel):
    """Open Inference Protocol server metadata (``GET /v2``)."""

    name: str
    version: str
    extensions: list[str]


class InstanceRouting(BaseModel):
    """One UP instance as the router sees it (``GET /admin/routing``)."""

    instance_id: str
    address: str
    routable: bool
    ejected: bool
    ejected_for_s: float | None = Field(
        description="Seconds left of the ejection (0 while probing); null when not ejected"
    )
    probing: bool
    ejections_in_a_row: int
    consecutive_failures: dict[str, int]


class ServiceRouting(BaseModel):
    instances: list[InstanceRouting]
    ejected: int


class DiscoveryState(BaseModel):
    mode: str = Field(description="stream, poll, or starting (no answer from the registry yet)")
    connected: bool
    fresh: bool
    registry: str


class RoutingPublic(BaseModel):
    """``GET /admin/routing``: how the gateway follows the registry and where calls go."""

    discovery: DiscoveryState
    services: dict[str, ServiceRouting]
