"""Who may call through this sidecar: Bearer tokens verified once, then remembered by hash.

Verifying an RS256 signature costs far more than the rest of the hot path, and a
client reuses its token for many calls, so a verified token's principal is
cached under the token's SHA-256 until the token expires.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from aimp_core.auth import Principal, bearer_token, can_invoke, require


class Verifier(Protocol):
    async def verify(self, authorization: str | None) -> Principal: ...


class TokenCache:
    """Principals of verified tokens, keyed by the token's hash, dropped at expiry."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, Principal] = OrderedDict()

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, token: str) -> Principal | None:
        key = self.key(token)
        principal = self._entries.get(key)
        if principal is None:
            return None
        if principal.expires_at <= self._clock():
            del self._entries[key]
            return None
        return principal

    def put(self, token: str, principal: Principal) -> None:
        if principal.expires_at <= self._clock():
            return
        key = self.key(token)
        self._entries[key] = principal
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._evict()

    def _evict(self) -> None:
        now = self._clock()
        for key in [k for k, p in self._entries.items() if p.expires_at <= now]:
            del self._entries[key]
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class CallerCheck:
    """Raise Unauthorized or Forbidden unless the caller may invoke ``service``."""

    def __init__(
        self, verifier: Verifier | None, service: str, cache: TokenCache, *, enabled: bool
    ) -> None:
        if enabled and verifier is None:
            raise ValueError("token verification is on but no verifier was given")
        self.verifier = verifier
        self.service = service
        self.cache = cache
        self.enabled = enabled

    async def check(self, authorization: str | None) -> Principal | None:
        if not self.enabled:
            return None
        token = bearer_token(authorization)
        principal = self.cache.get(token)
        if principal is None:
            assert self.verifier is not None
            principal = await self.verifier.verify(authorization)
            self.cache.put(token, principal)
        require(can_invoke(principal.roles, self.service), f"calling service {self.service!r}")
        return principal
