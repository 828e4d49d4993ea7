"""Access tokens: RS256 JWTs the gateway issues and verifies with its own key set."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from joserfc import jwt
from joserfc.jwk import KeySet

from aimp_core.auth import AUDIENCE, LEEWAY_S, Principal, bearer_token, verify_with_keys
from aimp_gateway.keys import ALGORITHM, SigningKey


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str

    def response(self) -> dict[str, str | int]:
        """The RFC 6749 §5.1 success body."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class TokenIssuer:
    """Signs access tokens: ``iss``, ``sub``, ``aud``, ``iat``, ``exp``, ``jti``, roles."""

    def __init__(self, key: SigningKey, *, issuer: str, ttl_s: int) -> None:
        self.key = key
        self.issuer = issuer
        self.ttl_s = ttl_s
        self._header = {"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}

    def issue(
        self, *, subject: str, client_id: str, roles: Iterable[str], now: float | None = None
    ) -> IssuedToken:
        issued_at = int(now if now is not None else time.time())
        role_list = sorted(set(roles))
        scope = " ".join(role_list)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": AUDIENCE,
            "iat": issued_at,
            "exp": issued_at + self.ttl_s,
            "jti": uuid.uuid4().hex,
            "client_id": client_id,
            "roles": role_list,
            "scope": scope,
        }
        token = jwt.encode(self._header, claims, self.key.key, algorithms=[ALGORITHM])
        return IssuedToken(access_token=token, expires_in=self.ttl_s, scope=scope)


class TokenVerifier:
    """Verifies bearer tokens locally; remembers tokens it has verified until they expire.

    A cache hit only skips the RSA signature check of a byte-identical token
    that already passed it; expiry is checked on every call.
    """

    def __init__(self, key_set: KeySet, *, issuer: str, cache_size: int = 10_000) -> None:
        self.key_set = key_set
        self.issuer = issuer
        self.cache_size = cache_size
        self._cache: dict[str, Principal] = {}

    def verify(self, authorization: str | None, now: float | None = None) -> Principal:
        """The caller's principal, or :class:`aimp_core.errors.Unauthorized`."""
        token = bearer_token(authorization)
        current = now if now is not None else time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if current <= cached.expires_at + LEEWAY_S:
                return cached
            del self._cache[token]
        principal = verify_with_keys(token, self.key_set, issuer=self.issuer, now=current)
        if self.cache_size > 0:
            if len(self._cache) >= self.cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[token] = principal
        return principal
