"""EventPublisher against a real Tansu broker that is stopped and started again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from aimp_cli import infra
from aimp_core.kafka import EventPublisher
from aimp_core.net import free_port, port_open

pytestmark = pytest.mark.integration
TOPIC = "aimp.requests.v1"


def start_tansu(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        infra.tansu_argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while not port_open("127.0.0.1", port):
        assert proc.poll() is None and time.monotonic() < deadline, "tansu did not start"
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


async def ids_on_broker(bootstrap: str, expect: int, timeout_s: float = 15) -> list[int]:
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    seen: list[int] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(set(seen)) < expect and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                seen.extend(json.loads(r.value)["i"] for r in records)
    finally:
        await consumer.stop()
    return seen


async def wait_sent(publisher: EventPublisher, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while publisher.pending:
        assert time.monotonic() < deadline, f"{publisher.pending} events still pending"
        await asyncio.sleep(0.05)


async def test_broker_restart_loses_nothing(tmp_path: Path) -> None:
    """Events acked before a restart and events published during the outage all reach the
    new broker, in order per key, without the caller ever waiting."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = start_tansu(port)
    publisher = EventPublisher(bootstrap, spool_dir=tmp_path / "spool", linger_s=0.01)
    await publisher.start()
    try:
        for i in range(2000):
            publisher.publish(TOPIC, "svc", {"i": i})
        await wait_sent(publisher)  # acknowledged by the first broker
        stop(broker)  # memory storage: everything it held is gone
        slowest = 0.0
        for i in range(2000, 4000):
            start = time.perf_counter()
            publisher.publish(TOPIC, "svc", {"i": i})
            slowest = max(slowest, time.perf_counter() - start)
            if i % 100 == 0:
                await asyncio.sleep(0.01)
        assert slowest < 0.005, "publish waited on the dead broker"
        # The sender notices the dead broker and spools; wait for it rather than a fixed
        # 0.3 s, which a loaded machine (parallel test files) can outlast.
        for _ in range(200):  # up to 10 s
            if list((tmp_path / "spool").glob("*.seg")):
                break
            await asyncio.sleep(0.05)
        assert list((tmp_path / "spool").glob("*.seg")), "the outage's events were not spooled"
        broker = start_tansu(port)
        await wait_sent(publisher)
        seen = await ids_on_broker(bootstrap, 4000)
        assert set(seen) == set(range(4000))
        outage = [i for i in seen if i >= 2000]
        assert outage == sorted(outage), "the spool was not replayed in order"
    finally:
        await publisher.stop()
        stop(broker)


async def test_stop_during_outage_spools_and_next_start_sends(tmp_path: Path) -> None:
    """Events unsent at stop are kept on disk and sent by the next publisher."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    spool = tmp_path / "spool"
    first = EventPublisher(bootstrap, spool_dir=spool)
    await first.start()
    for i in range(500):
        first.publish(TOPIC, "svc", {"i": i})
    await first.stop(flush_timeout_s=1)
    assert first.pending == 500  # all in the spool: nothing could be sent
    broker = start_tansu(port)
    second = EventPublisher(bootstrap, spool_dir=spool)
    await second.start()
    try:
        await wait_sent(second)
        assert sorted(await ids_on_broker(bootstrap, 500)) == list(range(500))
    finally:
        await second.stop()
        stop(broker)
