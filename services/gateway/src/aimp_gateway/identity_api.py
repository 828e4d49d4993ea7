"""Admin routes for identities: OAuth2 clients and console users.

Changing clients and users needs ``admin`` or ``admin:clients`` (only ``admin``
may grant or take away admin roles, or touch identities holding them); reading
needs a read-admin role (``auditor``, ``operator``...). Every change writes an
audit event with public views only.
Routes are synchronous (Argon2, SQL, Redis writes) and run in worker threads.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from aimp_core.auth import (
    Principal,
    can_manage_identities,
    can_read_admin,
    require,
    roles_beyond_reach,
)
from aimp_core.errors import BadRequest, Conflict, Forbidden, NotFound, request_id_of
from aimp_gateway.credentials import admin_password_problem
from aimp_gateway.passwords import hash_secret
from aimp_gateway.revocation import keep_until
from aimp_gateway.schemas import (
    ClientCreate,
    ClientCreated,
    ClientPublic,
    ClientUpdate,
    PasswordReset,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from aimp_gateway.state import Gateway, GatewayDep
from aimp_gateway.store import ClientExists, ClientRecord, UserExists, UserRecord

router = APIRouter(prefix="/admin", tags=["admin"])


def _principal(request: Request, gw: Gateway) -> Principal:
    return gw.plane.verifier.verify(request.headers.get("authorization"))


async def _identity_admin(request: Request, gw: GatewayDep) -> Principal:
    principal = _principal(request, gw)
    require(can_manage_identities(principal.roles), "changing clients and users")
    return principal


async def _reader(request: Request, gw: GatewayDep) -> Principal:
    principal = _principal(request, gw)
    require(can_read_admin(principal.roles), "reading clients, users and keys")
    return principal


IdentityAdmin = Annotated[Principal, Depends(_identity_admin)]
Reader = Annotated[Principal, Depends(_reader)]


def _within_reach(actor: Principal, *role_sets: Iterable[str]) -> None:
    """Only a full admin grants, takes away or manages holders of admin roles."""
    beyond = roles_beyond_reach(actor.roles, [r for roles in role_sets for r in roles])
    if beyond:
        raise Forbidden(f"only an admin may grant, remove or manage holders of {', '.join(beyond)}")


def _audit(
    gw: Gateway,
    request: Request,
    actor: Principal,
    action: str,
    target: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    gw.audit.record(
        actor=actor.subject,
        action=action,
        target=target,
        request_id=request_id_of(request),
        before=before,
        after=after,
    )


# -- clients ----------------------------------------------------------------------------


def _client_public(record: ClientRecord) -> ClientPublic:
    return ClientPublic(
        client_id=record.client_id,
        roles=list(record.roles),
        created_at=record.created_at,
        disabled=record.disabled,
    )


def _client_view(record: ClientRecord) -> dict[str, Any]:
    return _client_public(record).model_dump(mode="json")


def _get_client(gw: Gateway, client_id: str) -> ClientRecord:
    found = gw.store.get_client(client_id)
    if found is None:
        raise NotFound(f"client '{client_id}' does not exist; GET /admin/clients lists them")
    return found


@router.post(
    "/clients", status_code=201, summary="Create a client; its secret is returned only here"
)
def create_client(
    body: ClientCreate, request: Request, gw: GatewayDep, actor: IdentityAdmin
) -> ClientCreated:
    _within_reach(actor, body.roles)
    secret = secrets.token_urlsafe(32)
    try:
        record = gw.store.add_client(body.client_id, hash_secret(secret), body.roles)
    except ClientExists:
        raise Conflict(
            f"client '{body.client_id}' already exists; pick another id or delete it first"
        ) from None
    _audit(
        gw, request, actor, "client.create", f"clients/{body.client_id}", None, _client_view(record)
    )
    return ClientCreated(client_id=body.client_id, client_secret=secret, roles=body.roles)


@router.get("/clients", summary="List clients (never their secrets)")
def list_clients(gw: GatewayDep, _: Reader) -> list[ClientPublic]:
    return [_client_public(r) for r in gw.store.list_clients()]


@router.patch("/clients/{client_id}", summary="Change a client's roles or disable it")
def update_client(
    client_id: str, body: ClientUpdate, request: Request, gw: GatewayDep, actor: IdentityAdmin
) -> ClientPublic:
    before = _get_client(gw, client_id)
    _within_reach(actor, before.roles, body.roles or [])
    after = gw.store.update_client(client_id, roles=body.roles, disabled=body.disabled)
    if after is None:
        raise NotFound(f"client '{client_id}' was deleted meanwhile")
    _audit(
        gw,
        request,
        actor,
        "client.update",
        f"clients/{client_id}",
        _client_view(before),
        _client_view(after),
    )
    return _client_public(after)


@router.delete(
    "/clients/{client_id}",
    status_code=204,
    summary="Delete a client; tokens it already holds expire within their lifetime",
)
def delete_client(
    client_id: str, request: Request, gw: GatewayDep, actor: IdentityAdmin
) -> Response:
    before = _get_client(gw, client_id)
    _within_reach(actor, before.roles)
    if not gw.store.delete_client(client_id):
        raise NotFound(f"client '{client_id}' does not exist; GET /admin/clients lists them")
    _audit(gw, request, actor, "client.delete", f"clients/{client_id}", _client_view(before))
    return Response(status_code=204)


# -- users -------------------------------------------------------------------------------


def _user_public(record: UserRecord) -> UserPublic:
    return UserPublic(username=record.username, roles=list(record.roles))


def _user_view(record: UserRecord) -> dict[str, Any]:
    return _user_public(record).model_dump(mode="json")


def _get_user(gw: Gateway, username: str) -> UserRecord:
    found = gw.store.get_user(username)
    if found is None:
        raise NotFound(f"user '{username}' does not exist; GET /admin/users lists them")
    return found


def _check_password(username: str, password: str) -> None:
    problem = admin_password_problem(username, password)
    if problem:
        raise BadRequest(
            problem.replace("admin password", "password")
            + "; choose a unique password of at least 12 characters"
        )


def _end_sessions(gw: Gateway, username: str) -> None:
    """Revoke the user's refresh tokens and the access tokens issued with them."""
    policy = gw.token_endpoint.refresh_policy
    if policy is None:
        return
    access = policy.store.revoke_subject(username)
    gw.token_endpoint.revoke_access(access)
    gw.plane.verifier.revoke_local({jti: keep_until(exp) for jti, exp in access})


@router.post("/users", status_code=201, summary="Create a console user (password grant)")
def create_user(
    body: UserCreate, request: Request, gw: GatewayDep, actor: IdentityAdmin
) -> UserPublic:
    _within_reach(actor, body.roles)
    _check_password(body.username, body.password)
    try:
        record = gw.store.add_user(body.username, hash_secret(body.password), body.roles)
    except UserExists:
        raise Conflict(f"user '{body.username}' already exists; pick another name") from None
    _audit(gw, request, actor, "user.create", f"users/{body.username}", None, _user_view(record))
    return _user_public(record)


@router.get("/users", summary="List console users (never their passwords)")
def list_users(gw: GatewayDep, _: Reader) -> list[UserPublic]:
    return [_user_public(r) for r in gw.store.list_users()]


@router.get("/users/{username}", summary="One console user")
def get_user(username: str, gw: GatewayDep, _: Reader) -> UserPublic:
    return _user_public(_get_user(gw, username))


@router.patch("/users/{username}", summary="Change a user's roles (their current sign-ins end)")
def update_user(
    username: str, body: UserUpdate, request: Request, gw: GatewayDep, actor: IdentityAdmin
) -> UserPublic:
    before = _get_user(gw, username)
    _within_reach(actor, before.roles, body.roles)
    after = gw.store.update_user(username, roles=body.roles)
    if after is None:
        raise NotFound(f"user '{username}' was deleted meanwhile")
    _end_sessions(gw, username)
    _audit(
        gw,
        request,
        actor,
        "user.update",
        f"users/{username}",
        _user_view(before),
        _user_view(after),
    )
    return _user_public(after)


@router.put(
    "/users/{username}/password",
    status_code=204,
    summary="Reset a user's password (their current sign-ins end)",
)
def reset_password(
    username: str, body: PasswordReset, request: Request, gw: GatewayDep, actor: IdentityAdmin
) -> Response:
    before = _get_user(gw, username)
    _within_reach(actor, before.roles)
    _check_password(username, body.password)
    gw.store.update_user(username, password_hash=hash_secret(body.password))
    _end_sessions(gw, username)
    _audit(
        gw,
        request,
        actor,
        "user.password_reset",
        f"users/{username}",
        _user_view(before),
        _user_view(before),
    )
    return Response(status_code=204)


@router.delete("/users/{username}", status_code=204, summary="Delete a user (sign-ins end)")
def delete_user(username: str, request: Request, gw: GatewayDep, actor: IdentityAdmin) -> Response:
    before = _get_user(gw, username)
    _within_reach(actor, before.roles)
    if username == actor.subject:
        raise Conflict("you cannot delete the user you are signed in as; ask another admin")
    if not gw.store.delete_user(username):
        raise NotFound(f"user '{username}' does not exist; GET /admin/users lists them")
    _end_sessions(gw, username)
    _audit(gw, request, actor, "user.delete", f"users/{username}", _user_view(before))
    return Response(status_code=204)
