"""Bearer-token verification and role decisions shared by every service.

The gateway signs RS256 JWTs; every service verifies them on every call
against the gateway's JWKS (fetched once, refetched when an unknown ``kid``
appears, so a rotated key is picked up). Role decisions are pure functions.

Roles (DESIGN.md): ``admin`` (everything), ``operator`` (read all, deploy,
scale), ``invoker`` (call any service), ``invoke:<service>`` (call one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
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


def is_valid_role(role: str) -> bool:
    """Known roles, plus ``invoke:<service>`` for a well-formed service name."""
    if role in (ROLE_ADMIN, ROLE_OPERATOR, ROLE_INVOKER):
        return True
    service = role.removeprefix(INVOKE_PREFIX)
    return (
        role.startswith(INVOKE_PREFIX)
        and 0 < len(service) <= 63
        and all(c.isalnum() or c in "-_" for c in service)
    )


def can_invoke(roles: Iterable[str], service: str) -> bool:
    """May a caller with ``roles`` call ``service`` on the data plane?"""
    held = set(roles)
    return bool(held & {ROLE_ADMIN, ROLE_INVOKER}) or f"{INVOKE_PREFIX}{service}" in held


def can_read_admin(roles: Iterable[str]) -> bool:
    """May a caller read control-plane state (operators and admins)?"""
    return bool(set(roles) & {ROLE_ADMIN, ROLE_OPERATOR})


def can_operate(roles: Iterable[str]) -> bool:
    """May a caller deploy and scale (operators and admins)?"""
    return bool(set(roles) & {ROLE_ADMIN, ROLE_OPERATOR})


def can_administer(roles: Iterable[str]) -> bool:
    """May a caller change clients, users, roles and policies (admins only)?"""
    return ROLE_ADMIN in set(roles)


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


def verify_with_keys(
    token: str,
    keys: KeySet,
    *,
    issuer: str | None,
    audience: str = AUDIENCE,
    now: float | None = None,
) -> Principal:
    """Verify signature (RS256 only, so ``alg: none`` never passes), issuer, audience, expiry."""
    try:
        decoded = jwt.decode(token, keys, algorithms=["RS256"])
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
    return principal_from_claims(decoded.claims)


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

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self.MIN_REFRESH_INTERVAL_S and self._keys:
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
