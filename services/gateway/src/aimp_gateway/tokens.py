"""Access tokens: RS256 JWTs the gateway issues and verifies with its own key ring.

The verifier also accepts an external OpenID provider's tokens (when one is
configured) and refuses revoked tokens: the revoked set is local, kept in step
with Redis by :class:`~aimp_gateway.revocation.RevocationFollower`, so the check
costs one dict lookup on every call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from joserfc import jwt
from joserfc.jwk import KeySet

from aimp_core.auth import (
    AUDIENCE,
    LEEWAY_S,
    Principal,
    bearer_token,
    token_kid,
    verify_with_keys,
)
from aimp_core.errors import Unauthorized
from aimp_gateway.keys import ALGORITHM, KeyRing, SigningKey

#: An unknown ``kid`` re-reads the key directory at most this often (a rotation by
#: another gateway is also picked up by the periodic reload).
UNKNOWN_KID_RELOAD_S = 1.0
REVOKED = "token rejected: it has been revoked; get a new one"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    jti: str = ""
    expires_at: float = 0.0
    refresh_token: str | None = None

    def response(self) -> dict[str, str | int]:
        """The RFC 6749 §5.1 success body."""
        body: dict[str, str | int] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token:
            body["refresh_token"] = self.refresh_token
        return body


def _ring(key: KeyRing | SigningKey) -> KeyRing:
    return key if isinstance(key, KeyRing) else KeyRing.fixed(key)


class TokenIssuer:
    """Signs access tokens with the ring's active key: ``iss``, ``sub``, ``aud``, ``iat``,
    ``exp``, ``jti``, roles."""

    def __init__(self, key: KeyRing | SigningKey, *, issuer: str, ttl_s: int) -> None:
        self.ring = _ring(key)
        self.issuer = issuer
        self.ttl_s = ttl_s

    @property
    def key(self) -> SigningKey:
        return self.ring.active

    def issue(
        self, *, subject: str, client_id: str, roles: Iterable[str], now: float | None = None
    ) -> IssuedToken:
        issued_at = int(now if now is not None else time.time())
        role_list = sorted(set(roles))
        scope = " ".join(role_list)
        jti = uuid.uuid4().hex
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": AUDIENCE,
            "iat": issued_at,
            "exp": issued_at + self.ttl_s,
            "jti": jti,
            "client_id": client_id,
            "roles": role_list,
            "scope": scope,
        }
        key = self.ring.active
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}
        token = jwt.encode(header, claims, key.key, algorithms=[ALGORITHM])
        return IssuedToken(
            access_token=token,
            expires_in=self.ttl_s,
            scope=scope,
            jti=jti,
            expires_at=float(issued_at + self.ttl_s),
        )


class ExternalTokens(Protocol):
    """An external OpenID provider's tokens (see :mod:`aimp_gateway.external_idp`)."""

    def knows(self, kid: str) -> bool: ...

    def verify(self, token: str, now: float) -> Principal: ...

    def request_refresh(self) -> None: ...


class TokenVerifier:
    """Verifies bearer tokens locally; remembers tokens it has verified until they expire.

    A cache hit only skips the signature check of a byte-identical token that
    already passed it; expiry and revocation are checked on every call.
    """

    def __init__(
        self,
        keys: KeyRing | KeySet,
        *,
        issuer: str,
        cache_size: int = 10_000,
        external: ExternalTokens | None = None,
    ) -> None:
        self.ring = keys if isinstance(keys, KeyRing) else None
        self._static_keys = keys if isinstance(keys, KeySet) else None
        self.issuer = issuer
        self.cache_size = cache_size
        self.external = external
        self._cache: dict[str, Principal] = {}
        #: Revoked token ids -> until when they matter; replaced whole, never mutated.
        self._revoked: Mapping[str, float] = {}

    @property
    def key_set(self) -> KeySet:
        if self.ring is not None:
            return self.ring.key_set
        assert self._static_keys is not None
        return self._static_keys

    def verify(self, authorization: str | None, now: float | None = None) -> Principal:
        """The caller's principal, or :class:`aimp_core.errors.Unauthorized`."""
        token = bearer_token(authorization)
        current = now if now is not None else time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if current > cached.expires_at + LEEWAY_S:
                del self._cache[token]
            elif cached.token_id in self._revoked:  # "" is never in the set
                raise Unauthorized(REVOKED)
            else:
                return cached
        principal = self.inspect(token, current)
        self._refuse_revoked(principal)
        if self.cache_size > 0:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)), None)
            self._cache[token] = principal
        return principal

    def _refuse_revoked(self, principal: Principal) -> None:
        if principal.token_id and principal.token_id in self._revoked:
            raise Unauthorized(REVOKED)

    def inspect(self, token: str, now: float | None = None) -> Principal:
        """Check signature and claims (no cache, no revocation check; safe from any thread)."""
        current = now if now is not None else time.time()
        kid = token_kid(token)
        keys = self.key_set
        if kid is None or _has_kid(keys, kid):
            return verify_with_keys(token, keys, issuer=self.issuer, now=current)
        if self.external is not None and self.external.knows(kid):
            return self.external.verify(token, current)
        if self.ring is not None and self.ring.reload_if_stale(UNKNOWN_KID_RELOAD_S):
            return verify_with_keys(token, self.key_set, issuer=self.issuer, now=current)
        if self.external is not None:
            self.external.request_refresh()
        raise Unauthorized("token rejected: it is signed by a key this gateway does not know")

    def is_revoked(self, jti: str) -> bool:
        return bool(jti) and jti in self._revoked

    def set_revoked(self, revoked: Mapping[str, float]) -> None:
        """Replace the revoked set (from Redis) and drop cached tokens it now names."""
        self._revoked = {jti: until for jti, until in revoked.items() if jti}
        self._drop_cached(revoked)

    def revoke_local(self, revoked: Mapping[str, float]) -> None:
        """Add revocations this gateway just wrote (before the follower sees them)."""
        self._revoked = {**self._revoked, **{j: u for j, u in revoked.items() if j}}

    def _drop_cached(self, revoked: Mapping[str, float]) -> None:
        if not revoked:
            return
        gone = [t for t, p in list(self._cache.items()) if p.token_id in revoked]
        for token in gone:
            self._cache.pop(token, None)


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in keys.keys)
