"""Stats ingest: throughput, end-to-end lag, exactness, and a 30 s broker outage.

Starts its own Tansu broker and an ``aimp-stats`` process (SQLite in a temp dir)
and publishes request events with the same EventPublisher the gateway uses:

1. drain: 100,000 known events are published while stats is stopped, then stats
   starts; prints how fast it ingests the backlog, and checks that counts are
   exact and p50/p99 are within the sketch's 1 %.
2. ramp: events at increasing rates (default 5k, 10k, 20k, 30k events/s, 10 s
   each); per rate prints the rate stored and the lag from each event's ts (when
   it was published) to its SQL commit (p50/p99 over every event, from SQL).
3. outage (``--outage``): 200 events/s for 70 s with the broker killed for 30 s
   after 20 s (it loses everything it held) and started again; every event must
   be counted once.

Run: ``uv run python bench/stats.py [--rates 5000,10000,20000] [--outage]``.
Never part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from machine import cpu

from aimp_cli import infra
from aimp_core.kafka import EventPublisher, ensure_topics
from aimp_core.net import free_port, port_open, wait_http_ok

TOPIC = "aimp.requests.v1"
SERVICES = [f"svc-{i}" for i in range(4)]
CLIENTS = [f"client-{i}" for i in range(10)]


def event(rng: random.Random, ts: float) -> dict[str, Any]:
    status = rng.choice((200,) * 16 + (404, 429, 500, 503))
    return {
        "event_id": uuid.uuid4().hex,
        "ts": ts,
        "trace_id": uuid.uuid4().hex,
        "request_id": uuid.uuid4().hex,
        "client_id": rng.choice(CLIENTS),
        "service": rng.choice(SERVICES),
        "revision": rng.choice(("r1", "r2")),
        "instance_id": "pod-1",
        "status": status,
        "latency_ms": round(rng.lognormvariate(2.0, 1.0), 3),
        "upstream_ms": 2.0,
        "bytes_in": 100,
        "bytes_out": 200,
        "outcome": "ok",
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)] if ordered else float("nan")


class Stack:
    """A Tansu broker and an aimp-stats process, both private to this bench."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.kafka_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.db = root / "stats.db"
        self.broker: subprocess.Popen[bytes] | None = None
        self.stats: subprocess.Popen[bytes] | None = None

    def start_broker(self) -> None:
        self.broker = subprocess.Popen(
            infra.tansu_argv(self.kafka_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        while not port_open("127.0.0.1", self.kafka_port):
            time.sleep(0.05)

    def kill_broker(self) -> None:
        if self.broker is not None:
            self.broker.kill()
            self.broker.wait()

    def start_stats(self) -> None:
        port = free_port()
        env = {
            **os.environ,
            "AIMP_HOME": str(self.root),
            "AIMP_DATABASE_URL": f"sqlite:///{self.db}",
            "AIMP_KAFKA_BOOTSTRAP": self.bootstrap,
            "AIMP_STATS_PORT": str(port),
            "AIMP_BACKFLOW_SINK_ENABLED": "false",
            "AIMP_ALARM_EVALUATOR_ENABLED": "false",
            "AIMP_LOG_LEVEL": "WARNING",
        }
        log = open(self.root / "stats.log", "ab")  # noqa: SIM115 (closed with the process)
        self.stats = subprocess.Popen(
            [str(Path(sys.executable).parent / "aimp-stats")], env=env, stdout=log, stderr=log
        )
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout_s=30)

    def stop(self) -> None:
        for proc in (self.stats, self.broker):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)

    def sql(self, query: str, *args: Any) -> list[Any]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute(query, args).fetchall()

    def stored(self) -> int:
        try:
            return int(self.sql("SELECT COUNT(*) FROM request_events")[0][0])
        except sqlite3.OperationalError:
            return 0


async def wait_stored(stack: Stack, n: int, timeout_s: float) -> float:
    start = time.monotonic()
    while stack.stored() < n:
        if time.monotonic() - start > timeout_s:
            raise SystemExit(f"only {stack.stored()} of {n} events stored after {timeout_s} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def paced(publisher: EventPublisher, rng: random.Random, rate: int, seconds: float) -> int:
    """Publish ``rate`` events per second for ``seconds``, ts = the moment of publishing."""
    sent, start = 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) - sent
        now = time.time()
        for _ in range(due):
            value = event(rng, now)
            publisher.publish(TOPIC, value["service"], value)
        sent += max(0, due)
        await asyncio.sleep(0.005)
    return sent


async def drain(stack: Stack, n: int) -> None:
    rng = random.Random(1)
    values = [event(rng, time.time() - 600 + i * 600 / n) for i in range(n)]
    publisher = EventPublisher(stack.bootstrap)
    await publisher.start()
    for value in values:
        publisher.publish(TOPIC, value["service"], value)
    await publisher.stop(flush_timeout_s=60)
    stack.start_stats()
    await wait_stored(stack, 1, 60)  # the consumer group's join (~3 s on Tansu) is not ingest
    took = await wait_stored(stack, n, 300)
    print(f"drain: {n} queued events ingested in {took:.1f} s = {n / took:,.0f} events/s")
    stack.sql("SELECT COUNT(*), SUM(status >= 500), SUM(status = 429) FROM request_events")
    want = (n, sum(v["status"] >= 500 for v in values), sum(v["status"] == 429 for v in values))
    buckets = stack.sql(
        "SELECT SUM(requests), SUM(CASE WHEN status_class = 5 THEN requests END), "
        "SUM(throttled) FROM buckets_1m"
    )[0]
    print(f"  exact counts (requests, errors, throttled): {tuple(buckets) == want} {want}")


async def ramp(stack: Stack, rates: list[int], seconds: float) -> None:
    rng = random.Random(2)
    publisher = EventPublisher(stack.bootstrap)
    await publisher.start()
    try:
        for rate in rates:
            before, t0 = stack.stored(), time.time()
            sent = await paced(publisher, rng, rate, seconds)
            t1 = time.time()
            try:
                await wait_stored(stack, before + sent, 60)
            except SystemExit as exc:
                print(f"rate {rate:>6}/s: fell behind ({exc})")
                break
            lags = [
                r[0]
                for r in stack.sql(
                    "SELECT stored_at - ts FROM request_events WHERE ts >= ? AND ts < ?", t0, t1
                )
            ]
            stored = len(lags)
            print(
                f"rate {rate:>6}/s: stored {stored / (t1 - t0):>8,.0f} events/s over "
                f"{t1 - t0:.0f} s; lag p50 {pct(lags, 50) * 1000:6.0f} ms, "
                f"p99 {pct(lags, 99) * 1000:6.0f} ms, max {max(lags) * 1000:6.0f} ms"
            )
    finally:
        await publisher.stop(flush_timeout_s=30)


async def outage(stack: Stack) -> None:
    """200 events/s; the broker is killed after 20 s and started 30 s later."""
    rng = random.Random(3)
    await asyncio.sleep(5)  # earlier phases' events are in SQL (their publishers are gone)
    publisher = EventPublisher(stack.bootstrap)  # exactly as the gateway builds it
    await publisher.start()
    before = stack.stored()
    sent = await paced(publisher, rng, 200, 20)
    stack.kill_broker()
    print("outage: broker killed (memory storage: it loses every record)")
    sent += await paced(publisher, rng, 200, 30)
    stack.start_broker()
    print(f"outage: broker back after 30 s; {publisher.pending} events were waiting")
    sent += await paced(publisher, rng, 200, 20)
    await publisher.stop(flush_timeout_s=30)
    took = await wait_stored(stack, before + sent, 120)
    stored = stack.stored() - before
    print(f"outage: published {sent}, counted {stored} (exact: {stored == sent}); "
          f"all counted {took:.1f} s after the last publish")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rates", default="5000,10000,20000,30000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--outage", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the outage's reconnect warnings are expected
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {cpu()}, load average {load}, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="aimp-bench-stats-") as tmp:
        stack = Stack(Path(tmp))
        stack.start_broker()
        try:
            await ensure_topics(stack.bootstrap, [TOPIC])
            await drain(stack, args.events)
            await ramp(stack, [int(r) for r in args.rates.split(",")], args.seconds)
            if args.outage:
                await outage(stack)
        finally:
            stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
