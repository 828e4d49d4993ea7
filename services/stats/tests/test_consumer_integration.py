"""End to end on a real Tansu broker and a temp SQLite: publish, consume, ask for usage."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aimp_core.kafka import EventPublisher, ensure_topics
from aimp_stats.app import create_app
from aimp_stats.consumer import RequestEventConsumer
from aimp_stats.settings import StatsSettings

from .conftest import KeyServer
from .test_api import within_1pct

pytestmark = pytest.mark.integration

SERVICE = "classifier"
#: Just over the session timeout used below: long enough for Tansu to drop a stopped member.
TANSU_STALE_MEMBER_S = 3.5


def event(event_id: str, status: int, latency_ms: float) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": time.time(),
        "trace_id": uuid.uuid4().hex,
        "request_id": uuid.uuid4().hex,
        "client_id": "demo-app",
        "service": SERVICE,
        "revision": "r1",
        "instance_id": "pod-1",
        "status": status,
        "latency_ms": latency_ms,
        "upstream_ms": latency_ms / 2,
        "bytes_in": 100,
        "bytes_out": 200,
        "outcome": "ok" if status < 400 else "upstream_error",
    }


async def publish(bootstrap: str, topic: str, values: list[dict[str, Any]]) -> None:
    publisher = EventPublisher(bootstrap)
    await publisher.start()
    for value in values:
        publisher.publish(topic, SERVICE, value)
    await publisher.stop(flush_timeout_s=10)
    assert publisher.pending == 0, "the broker did not take every event"


async def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@asynccontextmanager
async def running(settings: StatsSettings, keys: KeyServer) -> AsyncIterator[FastAPI]:
    app = create_app(settings, verifier=keys.verifier())
    async with app.router.lifespan_context(app):
        yield app


async def usage(app: FastAPI, keys: KeyServer) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stats") as client:
        resp = await client.get(
            "/v1/usage", params={"service": SERVICE}, headers=keys.headers("operator")
        )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_consume_dedupe_and_restart(
    kafka_bootstrap: str, stats_keys: KeyServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Exact counts after a duplicate and a malformed event; restarts never count twice."""
    caplog.set_level(logging.WARNING, logger="aimp_stats.consumer")
    topic = f"aimp.requests.v1.test-{uuid.uuid4().hex[:8]}"
    settings = StatsSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'stats.db'}",
        kafka_bootstrap=kafka_bootstrap,
        requests_topic=topic,
        consumer_group=f"aimp-stats-{uuid.uuid4().hex[:8]}",
        # Shorter than the default so the wait below (see TANSU_STALE_MEMBER_S) stays short.
        kafka_session_timeout_ms=3_000,
        kafka_heartbeat_interval_ms=500,
    )
    await ensure_topics(kafka_bootstrap, [topic])
    statuses = [200, 200, 200, 503, 500, 429, 404, 200]
    values = [event(f"e{i}", s, float(10 * (i + 1))) for i, s in enumerate(statuses)]
    duplicate = dict(values[3])  # same event_id as e3 (a 503): must not count twice
    malformed = {"event_id": "bad", "status": "not a number"}
    await publish(kafka_bootstrap, topic, [*values[:4], duplicate, malformed, *values[4:]])
    expected = {"requests": 8, "errors": 2, "throttled": 1, "p50_ms": 40.0, "p99_ms": 80.0}

    async with running(settings, stats_keys) as app:
        consumer: RequestEventConsumer = app.state.consumer

        async def all_stored() -> bool:
            return consumer.counts.consumed + consumer.counts.rejected >= 10

        await wait_for(all_stored, "10 records to be consumed")
        assert within_1pct(await usage(app, stats_keys), expected)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stats") as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == ["sql", "kafka"]
        assert (consumer.counts.consumed, consumer.counts.rejected) == (9, 1)
        assert consumer.counts.duplicates == 1
        skipped = [r for r in caplog.records if r.getMessage().startswith("skipping malformed")]
        assert len(skipped) == 1 and isinstance(getattr(skipped[0], "offset", None), int)

    # Same group again: committed offsets mean only the new event is read. Tansu numbers a
    # new group's first generation 0 and aiokafka sends LeaveGroup only for generation > 0,
    # so the stopped member lingers until its session expires; rejoining before that makes
    # Tansu wait for the ghost (SyncGroup times out and the consumer reconnects, ~10 s).
    await asyncio.sleep(TANSU_STALE_MEMBER_S)
    async with running(settings, stats_keys) as app:
        consumer = app.state.consumer
        await publish(kafka_bootstrap, topic, [event("late", 200, 5.0)])

        async def late_stored() -> bool:
            return (await usage(app, stats_keys))["requests"] == 9

        await wait_for(late_stored, "the late event to be stored")
        assert (consumer.counts.consumed, consumer.counts.rejected) == (1, 0)

    # A new group replays the topic from the start: every event is read again, none counted.
    replay = settings.model_copy(update={"consumer_group": f"replay-{uuid.uuid4().hex[:8]}"})
    async with running(replay, stats_keys) as app:
        consumer = app.state.consumer

        async def replayed() -> bool:
            return consumer.counts.consumed + consumer.counts.rejected >= 11

        await wait_for(replayed, "the replay of 11 records")
        assert consumer.counts.duplicates == 10
        assert (await usage(app, stats_keys))["requests"] == 9
