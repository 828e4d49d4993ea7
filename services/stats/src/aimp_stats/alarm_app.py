"""Wiring of alarms inside the stats service: rules store, evaluator, notifications."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from aimp_core.kafka import EventPublisher
from aimp_core.registry_client import EurekaClient

from .alarm_evaluator import AlarmEvaluator
from .alarm_notify import AlarmNotifier, WebhookSender
from .alarm_sources import PodScraper, ServiceMetrics, Target, registry_targets
from .alarm_store import AlarmStore
from .settings import StatsSettings
from .store import EventStore


@dataclass
class Alarms:
    """The alarm parts the routes and the lifespan share."""

    store: AlarmStore
    evaluator: AlarmEvaluator
    notifier: AlarmNotifier
    redis: Redis
    registry: EurekaClient

    async def start(self, *, evaluate: bool) -> None:
        await asyncio.to_thread(self.store.create_schema)
        if evaluate:
            await self.notifier.start()
            await self.evaluator.start()

    async def stop(self) -> None:
        await self.evaluator.stop()
        await self.notifier.stop()
        await self.redis.aclose()
        await self.registry.aclose()


def build_alarms(settings: StatsSettings, events: EventStore) -> Alarms:
    store = AlarmStore(events.engine)
    registry = EurekaClient(settings.registry_url, timeout_s=settings.http_timeout_s)

    async def targets() -> list[Target]:
        return await registry_targets(registry)

    sender = WebhookSender(
        timeout_s=settings.alarm_webhook_timeout_s,
        attempts=settings.alarm_webhook_attempts,
        backoff_initial_s=settings.alarm_webhook_backoff_initial_s,
        backoff_max_s=settings.alarm_webhook_backoff_max_s,
    )
    notifier = AlarmNotifier(
        EventPublisher(settings.kafka_bootstrap),
        settings.alarm_topic,
        sender,
        default_webhook_url=settings.alarm_webhook_url,
    )
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.http_timeout_s,
        socket_connect_timeout=settings.http_timeout_s,
    )
    evaluator = AlarmEvaluator(
        store,
        ServiceMetrics(events),
        PodScraper(settings.alarm_scrape_timeout_s),
        targets,
        notifier,
        redis,
        interval_s=settings.alarm_eval_interval_s,
        lease_s=settings.alarm_leader_lease_s,
    )
    return Alarms(store, evaluator, notifier, redis, registry)
