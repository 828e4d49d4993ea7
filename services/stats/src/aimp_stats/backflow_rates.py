"""Carries the sampling rates from SQL to Redis: at once on a change, and periodically.

The periodic rewrite repairs a Redis that was flushed or restarted (gateways keep
their last rates meanwhile). Redis being away never fails a rate change: SQL keeps
it and the next successful sync applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from .backflow_store import BackflowConfigStore, publish_rates

log = logging.getLogger(__name__)


class RateSync:
    """Publishes every service's rate from SQL to Redis on demand and every ``interval_s``."""

    def __init__(
        self, store: BackflowConfigStore, redis: Redis, *, interval_s: float, timeout_s: float
    ) -> None:
        self.store = store
        self.redis = redis
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def publish_now(self, *, unless_empty: bool = False) -> bool:
        """Publish the current rates; False (logged) when Redis or SQL did not answer.

        ``unless_empty``: do nothing while SQL holds no settings at all (the periodic
        sync, so a stats that never had any does not wipe rates another one published).
        """
        async with self._lock:
            try:
                configs = await asyncio.to_thread(self.store.all)
                if unless_empty and not configs:
                    return True
                await asyncio.wait_for(publish_rates(self.redis, configs), self.timeout_s)
            except (RedisError, OSError, TimeoutError, SQLAlchemyError) as exc:
                log.warning(
                    "backflow rates not published to redis (retried every %.0f s): %s: %s",
                    self.interval_s,
                    type(exc).__name__,
                    str(exc)[:200],
                )
                return False
            return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="backflow-rate-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.publish_now(unless_empty=True)
            await asyncio.sleep(self.interval_s)
