"""Wiring of data backflow inside the stats service: config store, rate sync, sink."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import Engine

from .backflow_files import PartitionWriter
from .backflow_rates import RateSync
from .backflow_sink import BackflowSink, Redactions, backflow_root
from .backflow_store import BackflowConfigStore
from .settings import StatsSettings


@dataclass
class Backflow:
    """The backflow parts the routes and the lifespan share."""

    root: Path
    store: BackflowConfigStore
    redis: Redis
    rates: RateSync
    redactions: Redactions
    sink: BackflowSink

    async def start(self, *, consume: bool) -> None:
        """Create the table, start the rate sync (it publishes at once) and the sink."""
        await asyncio.to_thread(self.store.create_schema)
        await self.rates.start()
        if consume:
            await self.sink.start()

    async def stop(self) -> None:
        await self.sink.stop()
        await self.rates.stop()
        await self.redis.aclose()


def build_backflow(settings: StatsSettings, engine: Engine) -> Backflow:
    root = backflow_root(settings)
    store = BackflowConfigStore(engine)
    timeout_s = settings.backflow_redis_timeout_s
    redis = Redis.from_url(
        settings.redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    redactions = Redactions(store, settings.backflow_redaction_refresh_s)
    writer = PartitionWriter(
        root,
        part_max_bytes=settings.backflow_part_max_bytes,
        service_max_bytes=settings.backflow_service_max_bytes,
    )
    return Backflow(
        root=root,
        store=store,
        redis=redis,
        rates=RateSync(store, redis, interval_s=settings.backflow_resync_s, timeout_s=timeout_s),
        redactions=redactions,
        sink=BackflowSink(settings, writer, redactions),
    )
