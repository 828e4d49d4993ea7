"""Periodic expiry: deletes raw calls and buckets older than their retention.

Rollups need no periodic pass: the consumer writes minute, hour and day buckets
in the same transaction (a late event, e.g. replayed from a producer's spool hours
later, lands in all three). This task only keeps each tier within its retention.
Every stats replica runs it; deletes are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from .store import EventStore

log = logging.getLogger(__name__)

EXPIRED = Counter("aimp_stats_expired_rows_total", "Rows deleted for age, per table.", ["table"])


class Expiry:
    """Background task calling :meth:`EventStore.expire` every ``interval_s``."""

    def __init__(self, store: EventStore, interval_s: float) -> None:
        self.store = store
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stats-expiry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> dict[str, int]:
        deleted = await asyncio.to_thread(self.store.expire)
        for table, n in deleted.items():
            EXPIRED.labels(table).inc(n)
        if any(deleted.values()):
            log.info("expired old rows", extra={"deleted": deleted})
        return deleted

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("expiry failed, retrying in %.0f s: %s", self.interval_s, exc)
            await asyncio.sleep(self.interval_s)
