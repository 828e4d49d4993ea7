"""Tokens from an external OpenID provider (Keycloak, Entra ID, Okta...), mapped to our roles.

The provider's JWKS is fetched at start and every ``refresh_s`` (and soon after
a token names an unknown ``kid``), so :meth:`ExternalIdp.verify` stays
synchronous and local like our own tokens. Its claims become roles through a
mapping: the values of one claim (``groups`` by default; a dotted path such as
``realm_access.roles`` reaches into objects) each name a list of aimp roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from aimp_core.auth import (
    FORBIDDEN_ALGORITHMS,
    JwksVerifier,
    Principal,
    is_valid_role,
    verify_claims,
)
from aimp_core.ratelimit.loops import Loop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimMapping:
    """How an external token's claims become a principal."""

    role_claim: str = "groups"
    role_map: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: The claim naming the calling application (the throttle's and stats' client id).
    client_claim: str = "azp"


def mapping_problem(mapping: ClaimMapping, algorithms: Sequence[str]) -> str | None:
    """Why this configuration cannot be used, or None (checked once at start)."""
    for value, roles in mapping.role_map.items():
        bad = [r for r in roles if not is_valid_role(r)]
        if bad:
            return f"the role map sends '{value}' to unknown role(s) {bad}"
    forbidden = sorted(set(algorithms) & FORBIDDEN_ALGORITHMS)
    if forbidden or not algorithms:
        return f"external token algorithms must be asymmetric (RS256, ES256...), not {forbidden}"
    return None


def claim_values(claims: Mapping[str, Any], path: str) -> list[str]:
    """The values at a dotted claim path: a list, or a space-separated string."""
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return []
        node = node[part]
    if isinstance(node, str):
        return node.split()
    if isinstance(node, list):
        return [str(v) for v in node if isinstance(v, str | int)]
    return []


def map_roles(claims: Mapping[str, Any], mapping: ClaimMapping) -> frozenset[str]:
    """Every aimp role the token's claim values map to (unmapped values grant nothing)."""
    roles: set[str] = set()
    for value in claim_values(claims, mapping.role_claim):
        roles.update(mapping.role_map.get(value, ()))
    return frozenset(roles)


def external_principal(claims: Mapping[str, Any], mapping: ClaimMapping) -> Principal:
    subject = str(claims.get("sub", ""))
    client = claims.get(mapping.client_claim) or claims.get("client_id") or subject
    return Principal(
        subject=subject,
        client_id=str(client),
        roles=map_roles(claims, mapping),
        token_id=str(claims.get("jti", "")),
        expires_at=float(claims.get("exp", 0)),
    )


class ExternalIdp:
    """Verifies an external provider's tokens against its (periodically fetched) JWKS."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        audience: str,
        mapping: ClaimMapping,
        algorithms: Sequence[str] = ("RS256",),
        timeout_s: float = 5.0,
        refresh_s: float = 300.0,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.mapping = mapping
        self.algorithms = tuple(algorithms)
        self.refresh_s = refresh_s
        self.jwks = JwksVerifier(jwks_url, issuer=issuer, timeout_s=timeout_s)
        self._wake = asyncio.Event()
        self._loop = Loop("external-jwks", self._follow)

    def knows(self, kid: str) -> bool:
        keys = self.jwks.keys
        return keys is not None and any(k.kid == kid for k in keys.keys)

    def verify(self, token: str, now: float) -> Principal:
        keys = self.jwks.keys
        assert keys is not None  # knows() was True
        claims = verify_claims(
            token,
            keys,
            issuer=self.issuer,
            audience=self.audience,
            now=now,
            algorithms=self.algorithms,
        )
        return external_principal(claims, self.mapping)

    def request_refresh(self) -> None:
        """Fetch the JWKS soon (a token named a key we do not have; maybe a rotation)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # a worker thread: the periodic refresh picks the new key up
        self._wake.set()

    async def refresh(self) -> None:
        try:
            await self.jwks.refresh()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning(
                "cannot fetch the external provider's keys from %s: %s",
                self.jwks.jwks_url,
                type(exc).__name__,
            )

    async def _follow(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.refresh_s)
        self._wake.clear()
        await self.refresh()

    async def start(self) -> None:
        await self.refresh()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
