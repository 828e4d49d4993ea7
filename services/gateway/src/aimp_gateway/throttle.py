"""The per-client throttle: one GCRA check in Redis per call, one round trip.

The Lua script (:data:`aimp_gateway.gcra.LUA_SCRIPT`) is registered once and
called by its SHA. Redis down or slow never hangs a call: the socket timeout
bounds the wait, then the call is admitted (fail open) or refused with 503
(fail closed) per the setting, and for ``retry_after_outage_s`` later calls
skip Redis altogether, so only one call per period pays the timeout.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from aimp_core.errors import ServiceUnavailable, TooManyRequests
from aimp_gateway.gcra import LUA_SCRIPT, Decision, Limit, policy_header, ratelimit_header

log = logging.getLogger(__name__)

FAIL_OPEN = Counter(
    "aimp_gateway_throttle_fail_open_total",
    "Calls admitted without a rate check because Redis was unreachable or slow.",
)
FAIL_CLOSED = Counter(
    "aimp_gateway_throttle_fail_closed_total",
    "Calls refused because Redis was unreachable and the throttle fails closed.",
)
THROTTLED = Counter("aimp_gateway_throttled_total", "Calls refused by the per-client rate limit.")

KEY_PREFIX = "aimp:gw:rate:"


def make_redis(url: str, *, socket_timeout_s: float) -> Redis:
    """A Redis client that fails fast: bounded socket waits and no retries."""
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class Throttle:
    """Checks one client's call against its limit; raises 429 (or 503 when failing closed)."""

    def __init__(
        self,
        redis: Redis,
        limit: Limit,
        *,
        fail_open: bool,
        retry_after_outage_s: float,
    ) -> None:
        self.redis = redis
        self.limit = limit
        self.fail_open = fail_open
        self.retry_after_outage_s = retry_after_outage_s
        self._script = redis.register_script(LUA_SCRIPT)
        self._args = (limit.interval_us, limit.burst)
        self._policy = policy_header(limit)
        self._skip_until = 0.0
        self._in_outage = False

    async def check(self, client_id: str) -> None:
        """Return when the call may go on; raise :class:`TooManyRequests` when it may not."""
        if self._in_outage and time.monotonic() < self._skip_until:
            self._unchecked()
            return
        try:
            raw = await self._script(keys=[KEY_PREFIX + client_id], args=self._args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._outage(exc)
            self._unchecked()
            return
        if self._in_outage:
            self._in_outage = False
            log.info("redis answers again; rate checks resumed")
        allowed, remaining, retry_after_us, reset_after_us = (int(v) for v in raw)
        if allowed:
            return
        THROTTLED.inc()
        decision = Decision(False, 0, remaining, retry_after_us, reset_after_us)
        raise TooManyRequests(
            f"client '{client_id}' is over its rate limit ({self._policy}); retry after the "
            "Retry-After delay or ask an admin for a higher limit",
            retry_after_s=retry_after_us / 1_000_000,
            **{"RateLimit-Policy": self._policy, "RateLimit": ratelimit_header(decision)},
        )

    def _outage(self, exc: BaseException) -> None:
        self._skip_until = time.monotonic() + self.retry_after_outage_s
        if not self._in_outage:
            self._in_outage = True
            log.warning(
                "redis unreachable, rate checks %s until it answers: %s",
                "skipped (fail open)" if self.fail_open else "refuse calls (fail closed)",
                f"{type(exc).__name__}: {exc}"[:200],
            )

    def _unchecked(self) -> None:
        if self.fail_open:
            FAIL_OPEN.inc()
            return
        FAIL_CLOSED.inc()
        raise ServiceUnavailable(
            "the rate-limit store (Redis) is unreachable and this gateway fails closed; "
            "retry shortly",
            retry_after_s=self.retry_after_outage_s,
        )

    async def ping(self) -> None:
        await self.redis.ping()
