"""Rules from the throttle service to every enforcer, in well under a second.

The throttle service (the owner of the rules, in SQL) writes the whole
:class:`~aimp_core.ratelimit.policies.Snapshot` to Redis with its content
hash as the version, and publishes the version on a channel, in one
transaction. Each enforcer (:class:`Follower`) waits on the channel and,
whether a message came or not, compares versions every ``poll_s``: a lost
message, a dropped subscription or a Redis restart delays a change by at most
``poll_s``. When the snapshot is missing (Redis restarted empty) the enforcer
keeps the rules it has until the throttle service writes them again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis

from aimp_core.ratelimit.engine import REDIS_ERRORS
from aimp_core.ratelimit.loops import Loop, follow_channel
from aimp_core.ratelimit.policies import KEY_PREFIX, Snapshot

log = logging.getLogger(__name__)

CONFIG_KEY = KEY_PREFIX + "config"
VERSION_KEY = KEY_PREFIX + "config:version"
CHANNEL = KEY_PREFIX + "config:changed"


async def publish(redis: Redis, snapshot: Snapshot) -> str:
    """Store ``snapshot`` and announce it; returns its version."""
    version = snapshot.version
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(CONFIG_KEY, snapshot.to_json())
        pipe.set(VERSION_KEY, version)
        pipe.publish(CHANNEL, version)
        await pipe.execute()
    return version


async def published_version(redis: Redis) -> str | None:
    raw = await redis.get(VERSION_KEY)
    return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)


class Follower:
    """Keeps an enforcer's rules equal to the published snapshot."""

    def __init__(
        self, redis: Redis, on_change: Callable[[Snapshot], None], *, poll_s: float = 0.5
    ) -> None:
        self.redis = redis
        self.on_change = on_change
        self.poll_s = poll_s
        self.version: str | None = None
        self._loop = Loop("ratelimit-rules", self._follow)

    async def refresh(self) -> bool:
        """Load the published snapshot if it differs from ours; True when it changed."""
        version = await published_version(self.redis)
        if version is None or version == self.version:
            return False
        raw = await self.redis.get(CONFIG_KEY)
        if raw is None:
            return False
        snapshot = Snapshot.from_json(raw)
        self.version = snapshot.version
        self.on_change(snapshot)
        log.info("throttle rules loaded", extra={"version": self.version})
        return True

    async def _follow(self) -> None:
        """Subscribe, then check the version on every message and every ``poll_s``."""
        try:
            await follow_channel(
                self.redis, CHANNEL, self.refresh, poll_s=self.poll_s, stopping=self._loop.stopping
            )
        except REDIS_ERRORS:
            await self._loop.sleep(self.poll_s)

    async def start(self) -> None:
        """Load the rules once (if Redis answers), then follow changes in the background."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self.refresh()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
