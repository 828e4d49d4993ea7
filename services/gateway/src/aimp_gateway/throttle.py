"""The gateway's throttle: every applicable limit of a call, one Redis round trip.

The rules (policies, plans, assignments) come from the throttle service
through Redis (:class:`aimp_core.ratelimit.sync.Follower`: pub/sub plus a
version check every ``rules_poll_s``, so a change applies within 1 s). For
each (client, service) the applicable limits are resolved once and cached
(:mod:`aimp_core.ratelimit.policies`: a client's own policy, else its plan,
else a per-client policy, else the default limit: this gateway's settings,
overridden field by field by the config center's ``throttle`` block (applied
through :meth:`Throttle.config_changed` when a new version is in force);
plus per-service and global limits); a call is then one ``EVALSHA``
(:class:`aimp_core.ratelimit.engine.Limiter`) that admits it against all of
them or against none.

Redis unreachable never hangs a call: the socket timeout bounds the first
failed check, then calls are decided locally until a background probe finds
Redis again (fail open: each limit's rate divided among the live gateways;
fail closed: 503), per policy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aimp_core.ratelimit.calendar import day_index
from aimp_core.ratelimit.engine import Compiled, Limiter, Verdict
from aimp_core.ratelimit.policies import LimitFields, Resolver, Snapshot
from aimp_core.ratelimit.responses import refusal, verdict_headers
from aimp_core.ratelimit.sync import Follower
from aimp_gateway.policy import ConfigSnapshot, ThrottleDefault

log = logging.getLogger(__name__)

FAIL_OPEN = Counter(
    "aimp_gateway_throttle_fail_open_total",
    "Calls decided by the local limiter (this gateway's share) because Redis was unreachable.",
)
FAIL_CLOSED = Counter(
    "aimp_gateway_throttle_fail_closed_total",
    "Calls refused because Redis was unreachable and a limit fails closed.",
)
THROTTLED = Counter(
    "aimp_gateway_throttled_total",
    "Calls refused by a limit (429), by what refused them.",
    ["kind"],
)
MEMBERS = Gauge("aimp_gateway_throttle_members", "Live gateways sharing the limits, per Redis.")
#: Resolved limits kept per (client, service); cleared on a rule change or beyond this.
MAX_CACHED = 50_000


def make_redis(url: str, *, socket_timeout_s: float) -> Redis:
    """A Redis client that fails fast: bounded socket waits and no retries."""
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


@dataclass
class Ticket:
    """An admitted call: its RateLimit headers and the leases it holds until it ends."""

    verdict: Verdict
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    released: bool = False


def effective_default(base: LimitFields, override: ThrottleDefault) -> LimitFields:
    """The default limit in force: ``base`` (the settings) with the config center's fields."""
    return replace(
        base,
        rate=base.rate if override.rate_per_s is None else override.rate_per_s,
        burst=base.burst if override.burst is None else override.burst,
        on_redis_down=override.on_redis_down or base.on_redis_down,
    )


def _ascii_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode("latin-1", "replace")) for k, v in headers.items()]


class Throttle:
    """Checks each call against every limit that applies to it; raises 429 or 503."""

    def __init__(
        self,
        redis: Redis,
        default: LimitFields,
        *,
        lease_ttl_s: float = 10.0,
        probe_interval_s: float = 0.25,
        heartbeat_s: float = 1.0,
        member_ttl_s: float = 3.0,
        rules_poll_s: float = 0.5,
        enabled: bool = True,
    ) -> None:
        self.redis = redis
        #: The settings' default limit; the config center may override its fields.
        self.base_default = default
        #: The default limit in force (``base_default`` plus the live overrides).
        self.default = default
        self.enabled = enabled
        self.limiter = Limiter(
            redis,
            lease_ttl_s=lease_ttl_s,
            probe_interval_s=probe_interval_s,
            heartbeat_s=heartbeat_s,
            member_ttl_s=member_ttl_s,
        )
        self.follower = Follower(redis, self._rules_changed, poll_s=rules_poll_s)
        self.resolver = Resolver(Snapshot(), default)
        self._cache: dict[tuple[str, str], Compiled] = {}
        self._cache_day = day_index(time.time_ns() // 1000)

    def _rules_changed(self, snapshot: Snapshot) -> None:
        self.resolver = Resolver(snapshot, self.default)
        self._cache = {}

    def config_changed(self, config: ConfigSnapshot) -> None:
        """A new configuration is in force: take its default limit (once per version, not
        per call); the rules and the cache stay unless the default really changed."""
        default = effective_default(self.base_default, config.throttle_default)
        if default == self.default:
            return
        log.info(
            "default throttle limit changed",
            extra={"version": config.version, "rate_per_s": default.rate,
                   "burst": default.burst, "on_redis_down": default.on_redis_down},
        )  # fmt: skip
        self.default = default
        self._rules_changed(self.resolver.snapshot)

    def compiled(self, client_id: str, service: str) -> Compiled:
        """The limits of (client, service), resolved once per rule version (and UTC day,
        since the RateLimit-Policy header names the month's length)."""
        now_us = time.time_ns() // 1000
        key = (client_id, service)
        found = self._cache.get(key)
        if found is not None and day_index(now_us) == self._cache_day:
            return found
        if len(self._cache) >= MAX_CACHED or day_index(now_us) != self._cache_day:
            self._cache = {}
            self._cache_day = day_index(now_us)
        found = self._cache[key] = Compiled.of(self.resolver.applicable(client_id, service), now_us)
        return found

    async def check(self, client_id: str, service: str) -> Ticket | None:
        """The call's ticket when it may go on; raises 429 (a limit) or 503 (fails closed)."""
        if not self.enabled:
            return None
        verdict = await self.limiter.check(self.compiled(client_id, service))
        if verdict.allowed:
            if verdict.mode == "local":
                FAIL_OPEN.inc()
            return Ticket(verdict, _ascii_headers(verdict_headers(verdict)))
        if verdict.mode == "closed":
            FAIL_CLOSED.inc()
        else:
            THROTTLED.labels(verdict.kind.name.lower() if verdict.kind else "rate").inc()
        raise refusal(verdict, client_id)

    async def release(self, ticket: Ticket | None) -> None:
        """The call ended: free its concurrency slots (once; leases also expire on their own)."""
        if ticket is None or ticket.released:
            return
        ticket.released = True
        await self.limiter.release(ticket.verdict)

    async def start(self) -> None:
        if not self.enabled:
            return  # not a member either: it takes no share of any limit
        await self.follower.start()
        await self.limiter.start()
        MEMBERS.set_function(lambda: self.limiter.members)

    async def stop(self) -> None:
        await self.follower.stop()
        await self.limiter.stop()

    async def ping(self) -> None:
        await self.redis.ping()
