"""Wiring of the stats service: SQL store, Kafka consumer, token verifier, routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aimp_core.app import create_service_app
from aimp_core.auth import JwksVerifier

from .alarm_api import router as alarm_router
from .alarm_app import build_alarms
from .api import router
from .auth import TokenVerifier
from .backflow_api import router as backflow_router
from .backflow_app import build_backflow
from .consumer import RequestEventConsumer, kafka_ping
from .expiry import Expiry
from .settings import StatsSettings
from .store import EventStore, stats_engine

DESCRIPTION = (
    "Consumes one event per gateway call from Kafka (aimp.requests.v1) into SQL, "
    "deduplicated by event_id, into minute, hour and day buckets with latency sketches; "
    "answers usage, time series, top, per-revision, metering and call lookups over it."
)


def create_app(
    settings: StatsSettings | None = None,
    *,
    verifier: TokenVerifier | None = None,
    consume: bool = True,
) -> FastAPI:
    """The stats app; ``verifier`` defaults to the gateway's JWKS, ``consume=False`` skips Kafka."""
    settings = settings or StatsSettings()
    store = EventStore(stats_engine(settings.sql_url("stats")), settings.retention())
    consumer = RequestEventConsumer(settings, store)
    expiry = Expiry(store, settings.expiry_interval_s)
    backflow = build_backflow(settings, store.engine)
    alarms = build_alarms(settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(store.create_schema)
        if consume:
            await consumer.start()
            expiry.start()
        await backflow.start(consume=consume and settings.backflow_sink_enabled)
        await alarms.start(evaluate=consume and settings.alarm_evaluator_enabled)
        try:
            yield
        finally:
            await alarms.stop()
            await backflow.stop()
            await expiry.stop()
            await consumer.stop()
            store.engine.dispose()

    async def sql_ready() -> None:
        await asyncio.to_thread(store.ping)

    async def kafka_ready() -> None:
        await kafka_ping(settings.kafka_bootstrap, settings.kafka_request_timeout_ms / 1000)

    app = create_service_app(
        "stats",
        ready_checks={"sql": sql_ready, "kafka": kafka_ready},
        lifespan=lifespan,
        description=DESCRIPTION,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.consumer = consumer
    app.state.backflow = backflow
    app.state.alarms = alarms
    app.state.verifier = verifier or JwksVerifier(
        settings.jwks_url, issuer=settings.token_issuer, timeout_s=settings.http_timeout_s
    )
    app.include_router(router)
    app.include_router(backflow_router)
    app.include_router(alarm_router)
    return app
