"""kill -9 of a running stats process mid-stream, then a restart: counts stay exact."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from aimp_core.kafka import EventPublisher, ensure_topics
from aimp_core.net import free_port, wait_http_ok
from aimp_stats.domain import UsageFilter
from aimp_stats.store import EventStore, stats_engine

from .test_ingest_exact import known_events

pytestmark = pytest.mark.integration

EVENTS = 30_000


def start_stats(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    exe = str(Path(sys.executable).parent / "aimp-stats")
    with open(log, "ab") as out:
        proc = subprocess.Popen([exe], env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_http_ok(f"http://127.0.0.1:{env['AIMP_STATS_PORT']}/healthz", timeout_s=20)
    return proc


async def stored(store: EventStore) -> int:
    return (await asyncio.to_thread(store.usage, UsageFilter())).requests


async def test_kill_minus_9_mid_stream_loses_and_doubles_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Events keep arriving while the consumer is killed and restarted; all counted once."""
    topic = f"aimp.requests.v1.kill-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], partitions=3)
    db = tmp_path / "stats.db"
    env = {
        **os.environ,
        "AIMP_HOME": str(tmp_path),
        "AIMP_DATABASE_URL": f"sqlite:///{db}",
        "AIMP_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AIMP_STATS_PORT": str(free_port()),
        "AIMP_REQUESTS_TOPIC": topic,
        "AIMP_CONSUMER_GROUP": f"kill-{uuid.uuid4().hex[:8]}",
        "AIMP_KAFKA_SESSION_TIMEOUT_MS": "3000",
        "AIMP_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "AIMP_CONSUME_BATCH_MAX_EVENTS": "1000",
        "AIMP_BACKFLOW_SINK_ENABLED": "false",
        "AIMP_ALARM_EVALUATOR_ENABLED": "false",
    }
    values = known_events(EVENTS, seed=11)
    publisher = EventPublisher(kafka_bootstrap)
    await publisher.start()
    store = EventStore(stats_engine(f"sqlite:///{db}"))
    proc = start_stats(env, tmp_path / "stats-1.log")
    try:

        async def produce() -> None:
            for i, value in enumerate(values):  # ~6 s of traffic at ~5,000 events/s
                publisher.publish(topic, value["service"], value)
                if i % 250 == 0:
                    await asyncio.sleep(0.05)

        producing = asyncio.create_task(produce())
        deadline = time.monotonic() + 30
        while await stored(store) < 3000:  # the first process has stored some
            assert time.monotonic() < deadline, "the stats process stored nothing"
            await asyncio.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = await stored(store)
        assert killed_at < EVENTS, "killed too late to be mid-stream"
        proc = start_stats(env, tmp_path / "stats-2.log")
        await producing
        await publisher.stop(flush_timeout_s=20)
        assert publisher.pending == 0
        deadline = time.monotonic() + 60
        while (n := await stored(store)) < EVENTS:
            assert time.monotonic() < deadline, f"{n} of {EVENTS} stored after the restart"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # nothing more may arrive: no double counts
        u = await asyncio.to_thread(store.usage, UsageFilter())
        assert u.requests == EVENTS
        assert u.errors == sum(1 for v in values if v["status"] >= 500)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        store.engine.dispose()
