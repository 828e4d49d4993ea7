"""Publishes every rule from SQL to Redis, where each gateway follows it.

The API calls :meth:`RulePublisher.publish_now` after each change (gateways
see it within milliseconds, by pub/sub); a background loop compares the
published version with SQL every ``interval_s`` and republishes when they
differ: after a Redis restart, after a failed publish, or when another
replica changed the rules.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from sqlalchemy.exc import SQLAlchemyError

from aimp_core.ratelimit.engine import REDIS_ERRORS
from aimp_core.ratelimit.loops import Loop
from aimp_core.ratelimit.policies import Snapshot
from aimp_core.ratelimit.sync import publish, published_version

from .plan_store import PlanStore, build_snapshot
from .store import PolicyStore

log = logging.getLogger(__name__)


class RulePublisher:
    def __init__(
        self, policies: PolicyStore, plans: PlanStore, redis: Redis, *, interval_s: float
    ) -> None:
        self.policies = policies
        self.plans = plans
        self.redis = redis
        self.interval_s = interval_s
        #: The rules as SQL held them at the last look (what /v1/check applies).
        self.snapshot = Snapshot()
        self._lock = asyncio.Lock()
        self._loop = Loop("throttle-publisher", self._tick)
        self._failing = False

    async def _sync(self, *, force: bool) -> bool:
        async with self._lock:
            self.snapshot = await asyncio.to_thread(build_snapshot, self.policies, self.plans)
            try:
                if force or await published_version(self.redis) != self.snapshot.version:
                    await publish(self.redis, self.snapshot)
                    log.info("throttle rules published", extra={"version": self.snapshot.version})
            except REDIS_ERRORS as exc:
                if not self._failing:
                    log.warning("could not publish throttle rules to redis (will retry): %s", exc)
                self._failing = True
                return False
            self._failing = False
            return True

    async def publish_now(self) -> bool:
        """Publish the rules as SQL holds them now; False if Redis did not take them."""
        return await self._sync(force=True)

    async def _tick(self) -> None:
        try:
            await self._sync(force=False)
        except SQLAlchemyError as exc:
            log.warning("could not read throttle rules from SQL: %s", exc)
        await self._loop.sleep(self.interval_s)

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
