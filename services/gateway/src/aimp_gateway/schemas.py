"""Request and response bodies of the gateway's HTTP API (Create and Public kept apart)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from aimp_core.auth import ROLE_DESCRIPTIONS, is_valid_role

CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
_ROLE_NAMES = ", ".join(ROLE_DESCRIPTIONS)


def known_roles(roles: list[str]) -> list[str]:
    """The roles, sorted and unique; a ValueError names the first unknown one."""
    for role in roles:
        if not is_valid_role(role):
            raise ValueError(
                f"unknown role '{role}'; use {_ROLE_NAMES} or invoke:<service> "
                "(GET /admin/roles lists them)"
            )
    return sorted(set(roles))


class ClientCreate(BaseModel):
    """``POST /admin/clients``: the new client's id and roles (the secret is generated)."""

    client_id: str = Field(pattern=CLIENT_ID_PATTERN, examples=["billing-app"])
    roles: list[str] = Field(min_length=1, examples=[["invoke:resnet"]])

    _roles = field_validator("roles")(known_roles)


class ClientUpdate(BaseModel):
    """``PATCH /admin/clients/{client_id}``: new roles and/or the disabled flag."""

    roles: list[str] | None = Field(default=None, min_length=1, examples=[["invoker"]])
    disabled: bool | None = None

    @field_validator("roles")
    @classmethod
    def _known(cls, roles: list[str] | None) -> list[str] | None:
        return None if roles is None else known_roles(roles)


class UserCreate(BaseModel):
    """``POST /admin/users``: a console user who signs in with the password grant."""

    username: str = Field(pattern=USERNAME_PATTERN, examples=["alice"])
    password: str = Field(min_length=1, max_length=1024, examples=["a-long-unique-passphrase"])
    roles: list[str] = Field(min_length=1, examples=[["operator"]])

    _roles = field_validator("roles")(known_roles)


class UserUpdate(BaseModel):
    """``PATCH /admin/users/{username}``: the user's new roles."""

    roles: list[str] = Field(min_length=1, examples=[["auditor"]])

    _roles = field_validator("roles")(known_roles)


class PasswordReset(BaseModel):
    """``PUT /admin/users/{username}/password``."""

    password: str = Field(min_length=1, max_length=1024)


class UserPublic(BaseModel):
    """A user as listed: never the password or its hash."""

    username: str
    roles: list[str]


class RolePublic(BaseModel):
    name: str
    description: str


class KeyPublic(BaseModel):
    """A token-signing key: ``active`` signs, ``retired`` still verifies until ``drop_at``."""

    kid: str
    state: str
    created_at: float = Field(description="Unix seconds; 0 for the first key")
    drop_at: float | None = Field(description="When it leaves the JWKS; null for the active key")


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
    refresh_token: str | None = Field(
        default=None, description="Password and refresh_token grants only; rotates on use"
    )


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
    revision: str = Field(default="", description="The instance's aimp.revision ('' = none)")
    zone: str = Field(default="", description="The instance's aimp.zone ('' = none)")
    weight: int = Field(default=1, description="Its aimp.weight for weighted round robin")
    outstanding: int = Field(default=0, description="Calls from this gateway in flight to it")
    latency_ewma_ms: float | None = Field(
        default=None, description="The balancer's peak-EWMA latency; null before any answer"
    )


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
