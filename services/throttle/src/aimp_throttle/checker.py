"""Decisions for ``POST /v1/check``: the gateway's algorithm, for callers other than the gateway.

Rules come from the :class:`~aimp_throttle.publisher.RulePublisher`'s latest
look at SQL; the decision is one script call in the same Redis, on the same
keys, so a client's calls through the gateway and its checks here draw from
one budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aimp_core.errors import ServiceUnavailable
from aimp_core.ratelimit.engine import REDIS_ERRORS, Compiled, Limiter, Verdict
from aimp_core.ratelimit.policies import Applied, LimitFields, Resolver, Snapshot

from .publisher import RulePublisher


@dataclass(frozen=True)
class LimitUsage:
    applied: Applied
    rate_remaining: int
    used_day: int
    used_month: int
    in_flight: int


class Checker:
    def __init__(self, limiter: Limiter, publisher: RulePublisher, default: LimitFields) -> None:
        self.limiter = limiter
        self.publisher = publisher
        self.default = default
        self._snapshot: Snapshot | None = None
        self._resolver = Resolver(Snapshot(), default)

    def resolver(self) -> Resolver:
        snapshot = self.publisher.snapshot
        if snapshot is not self._snapshot:
            self._resolver = Resolver(snapshot, self.default)
            self._snapshot = snapshot
        return self._resolver

    def compiled(self, client_id: str, service: str) -> Compiled:
        return Compiled.of(self.resolver().applicable(client_id, service), time.time_ns() // 1000)

    async def check(self, client_id: str, service: str) -> Verdict:
        """Decide one call; a lease (when a concurrency cap applies) lives until released
        or until the lease time passes."""
        return await self.limiter.check(self.compiled(client_id, service), renew=False)

    async def release(self, client_id: str, service: str, lease_id: str) -> bool:
        try:
            return await self.limiter.release_lease(self.compiled(client_id, service), lease_id)
        except REDIS_ERRORS as exc:
            raise ServiceUnavailable(
                f"the rate-limit store (Redis) is unreachable ({type(exc).__name__}); the lease "
                "expires by itself, or retry the release shortly"
            ) from None

    async def usage(self, client_id: str, service: str | None) -> list[LimitUsage]:
        resolver = self.resolver()
        applied = (
            resolver.applicable(client_id, service) if service else resolver.for_client(client_id)
        )
        compiled = Compiled.of(applied, time.time_ns() // 1000)
        try:
            raw = await self.limiter.usage(compiled)
        except REDIS_ERRORS as exc:
            raise ServiceUnavailable(
                f"the rate-limit store (Redis) is unreachable ({type(exc).__name__}); usage "
                "lives there, retry shortly"
            ) from None
        return [LimitUsage(a, *raw[1 + 4 * i : 5 + 4 * i]) for i, a in enumerate(compiled.applied)]
