"""Wiring of the stats service: SQL store, Kafka consumer, token verifier, routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aimp_core.app import create_service_app
from aimp_core.auth import JwksVerifier
from aimp_core.db import make_engine

from .api import router
from .auth import TokenVerifier
from .consumer import RequestEventConsumer, kafka_ping
from .settings import StatsSettings
from .store import EventStore

DESCRIPTION = (
    "Consumes one event per gateway call from Kafka (aimp.requests.v1) into SQL, "
    "deduplicated by event_id, and answers usage questions over it."
)


def create_app(
    settings: StatsSettings | None = None,
    *,
    verifier: TokenVerifier | None = None,
    consume: bool = True,
) -> FastAPI:
    """The stats app; ``verifier`` defaults to the gateway's JWKS, ``consume=False`` skips Kafka."""
    settings = settings or StatsSettings()
    store = EventStore(make_engine(settings.sql_url("stats")))
    consumer = RequestEventConsumer(settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(store.create_schema)
        if consume:
            await consumer.start()
        try:
            yield
        finally:
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
    app.state.verifier = verifier or JwksVerifier(
        settings.jwks_url, issuer=settings.token_issuer, timeout_s=settings.http_timeout_s
    )
    app.include_router(router)
    return app
