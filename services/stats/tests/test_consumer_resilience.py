"""The consumer survives a broker outage and a failing SQL write (real Tansu, real SQLite)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from aimp_core.kafka import EventPublisher
from aimp_core.net import free_port
from aimp_stats.app import create_app
from aimp_stats.consumer import RequestEventConsumer
from aimp_stats.domain import UsageFilter
from aimp_stats.settings import StatsSettings
from aimp_stats.store import EventStore

from .conftest import KeyServer, start_tansu, stop_process

pytestmark = pytest.mark.integration


def event(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": time.time(),
        "trace_id": "t",
        "request_id": "r",
        "client_id": "app",
        "service": "svc",
        "status": 200,
        "latency_ms": 1.0,
        "upstream_ms": 0.5,
        "bytes_in": 1,
        "bytes_out": 1,
        "outcome": "ok",
    }


async def publish(bootstrap: str, topic: str, *event_ids: str) -> None:
    publisher = EventPublisher(bootstrap)
    await publisher.start()
    for event_id in event_ids:
        publisher.publish(topic, "svc", event(event_id))
    await publisher.stop(flush_timeout_s=10)
    assert publisher.pending == 0


async def stored(store: EventStore) -> int:
    return (await asyncio.to_thread(store.usage, UsageFilter())).requests


async def eventually(store: EventStore, count: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while await stored(store) != count:
        assert time.monotonic() < deadline, f"expected {count} stored, have {await stored(store)}"
        await asyncio.sleep(0.1)


async def test_survives_broker_restart_and_sql_failure(
    stats_keys: KeyServer, tmp_path: Path
) -> None:
    """A dead broker and a failing SQL write delay events but lose none and kill nothing."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    settings = StatsSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'stats.db'}",
        kafka_bootstrap=bootstrap,
        requests_topic="aimp.requests.v1",
        consumer_retry_initial_s=0.2,
        consumer_retry_max_s=1.0,
        kafka_session_timeout_ms=3_000,  # Tansu joins in ~2 s instead of ~3 s
        kafka_heartbeat_interval_ms=500,
    )
    broker = start_tansu(port)
    app = create_app(settings, verifier=stats_keys.verifier())
    consumer: RequestEventConsumer = app.state.consumer
    store: EventStore = app.state.store
    try:
        async with app.router.lifespan_context(app):
            await publish(bootstrap, settings.requests_topic, "a1", "a2")
            await eventually(store, 2)

            # SQL fails (the table is gone): nothing is committed, the batch is retried.
            with store.engine.begin() as conn:
                conn.execute(text("ALTER TABLE request_events RENAME TO parked"))
            await publish(bootstrap, settings.requests_topic, "b1")
            await asyncio.sleep(1.5)
            assert consumer.connected and consumer.counts.consumed == 2
            with store.engine.begin() as conn:
                conn.execute(text("ALTER TABLE parked RENAME TO request_events"))
            await eventually(store, 3)

            # The broker dies (memory storage: its data goes with it) and comes back.
            stop_process(broker)
            await asyncio.sleep(1.0)
            assert consumer._task is not None and not consumer._task.done()
            broker = start_tansu(port)
            await publish(bootstrap, settings.requests_topic, "c1")
            await eventually(store, 4, timeout_s=30)
            assert consumer.connected
    finally:
        stop_process(broker)
