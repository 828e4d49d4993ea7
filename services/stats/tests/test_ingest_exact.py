"""Known events through a real broker into SQL: exact counts, percentiles within 1 %,
and two consumer instances of one group sharing the topic's three partitions."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from aimp_core.kafka import EventPublisher, ensure_topics
from aimp_stats.consumer import RequestEventConsumer
from aimp_stats.domain import UsageFilter, percentile
from aimp_stats.settings import StatsSettings
from aimp_stats.sketch import ALPHA
from aimp_stats.store import EventStore, stats_engine

pytestmark = pytest.mark.integration

#: The full 100,000 runs in bench/stats.py; 20,000 keeps this test near 10 s.
EVENTS = 20_000
SERVICES = ("classifier", "ranker", "embedder")
CLIENTS = ("app-a", "app-b", "app-c", "app-d")
STATUSES = (200,) * 16 + (404, 429, 500, 503)


def known_events(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    now = time.time()
    return [
        {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "ts": now - 900 + i * 900 / n,
            "trace_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "client_id": rng.choice(CLIENTS),
            "service": rng.choice(SERVICES),
            "revision": rng.choice(("r1", "r2")),
            "instance_id": "pod-1",
            "status": rng.choice(STATUSES),
            "latency_ms": round(rng.lognormvariate(2.0, 1.0), 3),
            "upstream_ms": 1.0,
            "bytes_in": 10,
            "bytes_out": 20,
            "outcome": "ok",
        }
        for i in range(n)
    ]


async def test_two_consumers_count_known_events_exactly(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """20,000 known events: exact counts per filter and p50/p99 within 1 % of exact."""
    topic = f"aimp.requests.v1.exact-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], partitions=3)
    values = known_events(EVENTS, seed=7)
    publisher = EventPublisher(kafka_bootstrap)
    await publisher.start()
    for value in values:
        publisher.publish(topic, value["service"], value)
    await publisher.stop(flush_timeout_s=20)
    assert publisher.pending == 0

    settings = StatsSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'stats.db'}",
        kafka_bootstrap=kafka_bootstrap,
        requests_topic=topic,
        consumer_group=f"exact-{uuid.uuid4().hex[:8]}",
        consume_batch_max_events=2000,
    )
    stores = [EventStore(stats_engine(settings.sql_url("stats"))) for _ in range(2)]
    stores[0].create_schema()
    consumers = [RequestEventConsumer(settings, s) for s in stores]
    for c in consumers:
        await c.start()
    try:
        deadline = time.monotonic() + 40
        while sum(c.counts.consumed for c in consumers) < EVENTS:
            assert time.monotonic() < deadline, [c.counts for c in consumers]
            await asyncio.sleep(0.2)
    finally:
        for c in consumers:
            await c.stop()
    assert all(c.counts.consumed > 0 for c in consumers), "partitions were not shared"
    assert sum(c.counts.duplicates for c in consumers) == 0

    store = stores[0]
    for service in (None, *SERVICES):
        for client in (None, "app-b"):
            chosen = [
                v
                for v in values
                if (service is None or v["service"] == service)
                and (client is None or v["client_id"] == client)
            ]
            u = await asyncio.to_thread(store.usage, UsageFilter(service=service, client_id=client))
            assert u.requests == len(chosen)
            assert u.errors == sum(1 for v in chosen if v["status"] >= 500)
            assert u.throttled == sum(1 for v in chosen if v["status"] == 429)
            ordered = sorted(v["latency_ms"] for v in chosen)
            for got, p in ((u.p50_ms, 50), (u.p99_ms, 99)):
                exact = percentile(ordered, p)
                assert got is not None and exact is not None
                assert abs(got - exact) <= ALPHA * exact * (1 + 1e-9), (service, client, p)
    for s in stores:
        s.engine.dispose()
