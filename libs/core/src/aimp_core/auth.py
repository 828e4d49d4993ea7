"""Bearer-token verification and role decisions shared by every service.

The gateway signs RS256 JWTs; every service verifies them on every call
against the gateway's JWKS (fetched once, refetched when an unknown ``kid``
appears, so a rotated key is picked up). Role decisions are pure functions.

Roles (DESIGN.md): ``admin`` (everything), ``operator`` (read all, deploy,
scale), ``invoker`` (call any service), ``invoke:<service>`` (call one); plus
narrower admin roles: ``admin:clients`` (clients, users, roles),
``admin:config`` (routing and fuse configuration), ``admin:throttle``
(throttle policies) and ``auditor`` (read-only admin). Each role grants a set
of :class:`Permission`; the ``can_*`` functions ask for one permission.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from aimp_core.errors import Forbidden, Unauthorized

ROLE_ADMIN = "admin"
ROLE_OPERATOR = "operator"
ROLE_INVOKER = "invoker"
INVOKE_PREFIX = "invoke:"
ROLE_ADMIN_CLIENTS = "admin:clients"
ROLE_ADMIN_CONFIG = "admin:config"
ROLE_ADMIN_THROTTLE = "admin:throttle"
ROLE_AUDITOR = "auditor"
#: Audience every aimp token carries.
AUDIENCE = "aimp"
#: Seconds of clock skew tolerated on exp/iat/nbf.
LEEWAY_S = 30


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a verified token."""

    subject: str
    client_id: str
    roles: frozenset[str]
    token_id: str
    expires_at: float


# -- pure decisions -------------------------------------------------------------


class Permission(StrEnum):
    """What a role lets its holder do; roles are named sets of these."""

    INVOKE_ANY = "invoke-any"
    READ = "read"
    OPERATE = "operate"
    MANAGE_IDENTITIES = "manage-identities"
    MANAGE_CONFIG = "manage-config"
    MANAGE_THROTTLE = "manage-throttle"
    MANAGE_KEYS = "manage-keys"


#: Every fixed role, what it is for (``GET /admin/roles``) and what it may do.
ROLE_DESCRIPTIONS: dict[str, str] = {
    ROLE_ADMIN: "everything, including signing-key rotation",
    ROLE_OPERATOR: "read all control-plane state, deploy and scale",
    ROLE_INVOKER: "call any service on the data plane",
    ROLE_ADMIN_CLIENTS: "manage OAuth2 clients, console users and their roles; read state",
    ROLE_ADMIN_CONFIG: "change routing, load-balancing and fuse configuration; read state",
    ROLE_ADMIN_THROTTLE: "change throttle policies and plans; read state",
    ROLE_AUDITOR: "read-only access to every admin API",
}
#: ``invoke:<service>`` is a family of roles, described once.
INVOKE_ROLE_DESCRIPTION = "call one service, e.g. invoke:resnet"
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    ROLE_ADMIN: frozenset(Permission),
    ROLE_OPERATOR: frozenset({Permission.READ, Permission.OPERATE}),
    ROLE_INVOKER: frozenset({Permission.INVOKE_ANY}),
    ROLE_ADMIN_CLIENTS: frozenset({Permission.READ, Permission.MANAGE_IDENTITIES}),
    ROLE_ADMIN_CONFIG: frozenset({Permission.READ, Permission.MANAGE_CONFIG}),
    ROLE_ADMIN_THROTTLE: frozenset({Permission.READ, Permission.MANAGE_THROTTLE}),
    ROLE_AUDITOR: frozenset({Permission.READ}),
}


def is_valid_role(role: str) -> bool:
    """Known roles, plus ``invoke:<service>`` for a well-formed service name."""
    if role in ROLE_PERMISSIONS:
        return True
    service = role.removeprefix(INVOKE_PREFIX)
    return (
        role.startswith(INVOKE_PREFIX)
        and 0 < len(service) <= 63
        and all(c.isalnum() or c in "-_" for c in service)
    )


def permissions_of(roles: Iterable[str]) -> frozenset[Permission]:
    """Everything ``roles`` allow together (unknown roles allow nothing)."""
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(granted)


def has_permission(roles: Iterable[str], permission: Permission) -> bool:
    return permission in permissions_of(roles)


def can_invoke(roles: Iterable[str], service: str) -> bool:
    """May a caller with ``roles`` call ``service`` on the data plane?"""
    held = set(roles)
    return bool(held & {ROLE_ADMIN, ROLE_INVOKER}) or f"{INVOKE_PREFIX}{service}" in held


def can_read_admin(roles: Iterable[str]) -> bool:
    """May a caller read control-plane state (admins, operators, auditors, narrow admins)?"""
    return has_permission(roles, Permission.READ)


def can_operate(roles: Iterable[str]) -> bool:
    """May a caller deploy and scale (operators and admins)?"""
    return has_permission(roles, Permission.OPERATE)


def can_administer(roles: Iterable[str]) -> bool:
    """Is the caller a full admin (every admin change, signing keys included)?"""
    return ROLE_ADMIN in set(roles)


def can_manage_identities(roles: Iterable[str]) -> bool:
    """May a caller change clients, users and their roles (admin, admin:clients)?"""
    return has_permission(roles, Permission.MANAGE_IDENTITIES)


def can_manage_config(roles: Iterable[str]) -> bool:
    """May a caller change routing and fuse configuration (admin, admin:config)?"""
    return has_permission(roles, Permission.MANAGE_CONFIG)


def can_manage_throttle(roles: Iterable[str]) -> bool:
    """May a caller change throttle policies and plans (admin, admin:throttle)?"""
    return has_permission(roles, Permission.MANAGE_THROTTLE)


def can_manage_keys(roles: Iterable[str]) -> bool:
    """May a caller rotate the token-signing key (admin only)?"""
    return has_permission(roles, Permission.MANAGE_KEYS)


#: Roles only a full admin may grant, take away, or manage the holders of: otherwise an
#: ``admin:clients`` could make itself (or a puppet) an ``admin``.
PRIVILEGED_ROLES = frozenset(
    {ROLE_ADMIN, ROLE_ADMIN_CLIENTS, ROLE_ADMIN_CONFIG, ROLE_ADMIN_THROTTLE}
)


def roles_beyond_reach(caller_roles: Iterable[str], roles: Iterable[str]) -> list[str]:
    """The roles in ``roles`` the caller may not grant or revoke (sorted; empty when fine)."""
    if ROLE_ADMIN in set(caller_roles):
        return []
    return sorted(set(roles) & PRIVILEGED_ROLES)


def require(allowed: bool, what: str) -> None:
    if not allowed:
        raise Forbidden(f"your token's roles do not allow {what}; ask an admin for the role")


# -- verification -----------------------------------------------------------------


def bearer_token(authorization: str | None) -> str:
    """The token from an ``Authorization: Bearer`` header, or 401 saying what is missing."""
    if not authorization:
        raise Unauthorized(
            "no Authorization header; send 'Authorization: Bearer <token>' with a token "
            "from POST /oauth/token",
            error="invalid_request",
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "the Authorization header must be 'Bearer <token>'", error="invalid_request"
        )
    return token.strip()


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    roles = claims.get("roles", [])
    if not isinstance(roles, list):
        raise Unauthorized("token claim 'roles' must be a list")
    return Principal(
        subject=str(claims.get("sub", "")),
        client_id=str(claims.get("client_id") or claims.get("sub", "")),
        roles=frozenset(str(r) for r in roles),
        token_id=str(claims.get("jti", "")),
        expires_at=float(claims.get("exp", 0)),
    )


#: The only signature algorithm of aimp's own tokens.
OWN_ALGORITHMS = ("RS256",)
#: Algorithms never accepted, whatever a setting says: unsigned and shared-secret ones
#: (a verifier holding public keys must never treat one as an HMAC secret).
FORBIDDEN_ALGORITHMS = frozenset({"none", "HS256", "HS384", "HS512"})


def verify_claims(
    token: str,
    keys: KeySet,
    *,
    issuer: str | None,
    audience: str = AUDIENCE,
    now: float | None = None,
    algorithms: Iterable[str] = OWN_ALGORITHMS,
) -> dict[str, Any]:
    """The claims of a token whose signature, issuer, audience and expiry all check out."""
    allowed = [a for a in algorithms if a not in FORBIDDEN_ALGORITHMS]
    try:
        decoded = jwt.decode(token, keys, algorithms=allowed)
        registry = JWTClaimsRegistry(
            now=int(now if now is not None else time.time()),
            leeway=LEEWAY_S,
            exp={"essential": True},
            aud={"essential": True, "value": audience},
            iss={"essential": True, "value": issuer} if issuer else {"essential": False},
        )
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise Unauthorized(f"token rejected: {exc.description or exc.error}") from None
    except ValueError:
        raise Unauthorized("token rejected: it is not a well-formed JWT") from None
    return dict(decoded.claims)


def verify_with_keys(
    token: str,
    keys: KeySet,
    *,
    issuer: str | None,
    audience: str = AUDIENCE,
    now: float | None = None,
) -> Principal:
    """Verify signature (RS256 only, so ``alg: none`` never passes), issuer, audience, expiry."""
    claims = verify_claims(token, keys, issuer=issuer, audience=audience, now=now)
    return principal_from_claims(claims)


def token_kid(token: str) -> str | None:
    try:
        header = jws.extract_compact(token.encode()).protected
    except (JoseError, ValueError):
        return None
    kid = header.get("kid")
    return str(kid) if kid else None


class JwksVerifier:
    """Verifies tokens against a remote JWKS, refetching it when a new ``kid`` appears."""

    #: Never refetch the JWKS more often than this, so bad tokens cannot flood the gateway.
    MIN_REFRESH_INTERVAL_S = 5.0

    def __init__(self, jwks_url: str, *, issuer: str | None, timeout_s: float = 5.0) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.timeout_s = timeout_s
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def keys(self) -> KeySet | None:
        """The key set last fetched (None before the first fetch)."""
        return self._keys

    async def refresh(self, *, force: bool = False) -> None:
        """Fetch the JWKS (at most once per ``MIN_REFRESH_INTERVAL_S`` unless ``force``)."""
        await self._refresh(force=force)

    async def _refresh(self, *, force: bool = False) -> None:
        async with self._lock:
            recent = time.monotonic() - self._fetched_at < self.MIN_REFRESH_INTERVAL_S
            if recent and self._keys and not force:
                return
            async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                resp = await http.get(self.jwks_url)
                resp.raise_for_status()
            self._keys = KeySet.import_key_set(resp.json())
            self._fetched_at = time.monotonic()

    async def verify(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        kid = token_kid(token)
        if self._keys is None or (kid and not any(k.kid == kid for k in self._keys.keys)):
            try:
                await self._refresh()
            except httpx.HTTPError as exc:
                raise Unauthorized(
                    f"cannot verify tokens right now: the key set at {self.jwks_url} is "
                    f"unreachable ({type(exc).__name__})"
                ) from None
        assert self._keys is not None
        return verify_with_keys(token, self._keys, issuer=self.issuer)
