"""Revoked access tokens (RFC 7009), seen by every gateway within one poll.

A revocation writes, in one Redis transaction: ``aimp:auth:revoked:jti:<jti>``
with a TTL of the token's remaining lifetime (plus leeway), the ``jti`` into the
index ``aimp:auth:revoked`` (score: when the entry may go), a new version, and
a message on ``aimp:auth:revoked:changed``. Every gateway keeps the index as a
local set in its :class:`~aimp_gateway.tokens.TokenVerifier`
(:class:`RevocationFollower`: it reloads on every message and whenever the
version differs at a poll, so a lost message delays a revocation by at most
``poll_s``). A Redis restarted empty keeps the set each gateway already holds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping

import redis
from redis.asyncio import Redis as AsyncRedis

from aimp_core.auth import LEEWAY_S
from aimp_core.ratelimit.engine import REDIS_ERRORS
from aimp_core.ratelimit.loops import Loop, follow_channel

log = logging.getLogger(__name__)

PREFIX = "aimp:auth:revoked"
INDEX_KEY = PREFIX
VERSION_KEY = PREFIX + ":version"
CHANNEL = PREFIX + ":changed"


def jti_key(jti: str) -> str:
    return f"{PREFIX}:jti:{jti}"


def keep_until(expires_at: float) -> float:
    """A revoked token matters until it would be refused as expired anyway."""
    return expires_at + LEEWAY_S


class RevocationWriter:
    """Records revocations in Redis (synchronous: runs in the token endpoint's threads)."""

    def __init__(self, client: redis.Redis, *, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.clock = clock

    def revoke(self, tokens: Iterable[tuple[str, float]]) -> int:
        """Revoke each ``(jti, expires_at)`` not yet expired; returns how many were written.

        Raises a Redis error when Redis is unreachable: the caller must say so.
        """
        now = self.clock()
        live = {jti: keep_until(exp) for jti, exp in tokens if jti and keep_until(exp) > now}
        if not live:
            return 0
        pipe = self.redis.pipeline(transaction=True)
        for jti, until in live.items():
            pipe.set(jti_key(jti), b"1", ex=max(1, math.ceil(until - now)))
        pipe.zadd(INDEX_KEY, live)
        pipe.zremrangebyscore(INDEX_KEY, "-inf", now)
        pipe.incr(VERSION_KEY)
        pipe.publish(CHANNEL, ",".join(live))
        pipe.execute()
        return len(live)

    def is_revoked(self, jti: str) -> bool:
        return bool(jti) and bool(self.redis.exists(jti_key(jti)))


class RevocationFollower:
    """Keeps a verifier's revoked set equal to Redis's index (pub/sub plus version poll)."""

    def __init__(
        self,
        client: AsyncRedis,
        on_change: Callable[[Mapping[str, float]], None],
        *,
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.on_change = on_change
        self.poll_s = poll_s
        self.clock = clock
        self.version: bytes | str | None = None
        self._loop = Loop("revocations", self._follow)

    async def refresh(self) -> bool:
        """Reload the index when its version moved; True when it did."""
        version = await self.redis.get(VERSION_KEY)
        if version is None or version == self.version:
            return False
        entries = await self.redis.zrangebyscore(INDEX_KEY, self.clock(), "+inf", withscores=True)
        revoked: dict[str, float] = {}
        for entry in entries:
            jti, until = entry[0], entry[1]
            revoked[jti.decode() if isinstance(jti, bytes) else str(jti)] = float(until)
        self.version = version
        self.on_change(revoked)
        return True

    async def _follow(self) -> None:
        try:
            await follow_channel(
                self.redis, CHANNEL, self.refresh, poll_s=self.poll_s, stopping=self._loop.stopping
            )
        except REDIS_ERRORS:
            await self._loop.sleep(self.poll_s)

    async def start(self) -> None:
        """Load the revoked set once (if Redis answers), then follow it in the background."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self.refresh()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
