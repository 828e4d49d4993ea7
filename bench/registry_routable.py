"""Registration-to-visible latency of the aimp registry: change stream vs polling.

Never part of the tests. Starts two registry processes of its own (peers of each
other) on free ports, then registers N instances on node A one at a time, and
measures, per instance, the time from just before the POST to the moment it is
seen by:

- a reader of node A's change stream (``GET /eureka/stream``, what the gateway uses);
- a reader of node B's change stream (so the figure includes peer replication);
- a reader polling ``GET /eureka/apps`` on node A every ``--poll-s`` seconds
  (1 s by default), measured;
- Eureka's default client, which polls every 30 s: computed from the measured poll
  by scaling (uniform phase), not measured; Eureka's 30 s server response cache
  and Ribbon's 30 s list refresh come on top of that in a Spring Cloud stack.

    uv run python bench/registry_routable.py [--instances 300] [--poll-s 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model

from aimp_core.net import free_port, wait_http_ok
from aimp_core.registry_client import EurekaClient, instance_document

EUREKA_POLL_S = 30.0


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.999999) - 1))]


def start_registry(home: Path, port: int, peer: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AIMP_HOME": str(home),
        "AIMP_REGISTRY_PORT": str(port),
        "AIMP_REGISTRY_PEERS": f"http://127.0.0.1:{peer}/eureka",
        "AIMP_LOG_LEVEL": "WARNING",
    }
    exe = Path(sys.executable).parent / "aimp-registry"
    log = open(home / f"registry-{port}.log", "ab")  # noqa: SIM115 (lives with the process)
    return subprocess.Popen([str(exe)], stdout=log, stderr=subprocess.STDOUT, env=env)


async def follow_stream(url: str, seen: dict[str, float], ready: asyncio.Event) -> None:
    client = EurekaClient(url, timeout_s=5)
    try:
        async for event in client.watch(read_timeout_s=60):
            if event.kind == "snapshot":
                ready.set()
            elif event.action == "ADDED" and event.instance is not None:
                seen.setdefault(event.instance.instance_id, time.perf_counter())
    finally:
        await client.aclose()


async def poll(url: str, interval_s: float, seen: dict[str, float]) -> None:
    client = EurekaClient(url, timeout_s=5)
    try:
        await asyncio.sleep(random.uniform(0, interval_s))
        while True:
            for inst in await client.applications():
                seen.setdefault(inst.instance_id, time.perf_counter())
            await asyncio.sleep(interval_s)
    finally:
        await client.aclose()


async def run(instances: int, poll_s: float, gap_ms: float) -> None:
    ports = (free_port(), free_port())
    with tempfile.TemporaryDirectory(prefix="aimp-bench-registry-") as tmp:
        procs = []
        for port, peer in (ports, ports[::-1]):
            home = Path(tmp) / str(port)
            home.mkdir()
            procs.append(start_registry(home, port, peer))
        try:
            for port in ports:
                wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout_s=30)
            a, b = (f"http://127.0.0.1:{p}/eureka" for p in ports)
            await measure(a, b, instances, poll_s, gap_ms)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=15)


async def measure(a: str, b: str, instances: int, poll_s: float, gap_ms: float) -> None:
    on_a: dict[str, float] = {}
    on_b: dict[str, float] = {}
    polled: dict[str, float] = {}
    ready_a, ready_b = asyncio.Event(), asyncio.Event()
    readers = [
        asyncio.create_task(follow_stream(a, on_a, ready_a)),
        asyncio.create_task(follow_stream(b, on_b, ready_b)),
        asyncio.create_task(poll(a, poll_s, polled)),
    ]
    await asyncio.wait_for(asyncio.gather(ready_a.wait(), ready_b.wait()), 10)
    writer = EurekaClient(a, timeout_s=5)
    sent: dict[str, float] = {}
    post_ms: list[float] = []
    for i in range(instances):
        iid = f"bench-{i}"
        doc = instance_document(app="bench", instance_id=iid, ip="127.0.0.1", port=10000 + i)
        sent[iid] = time.perf_counter()
        await writer.register(doc)
        post_ms.append((time.perf_counter() - sent[iid]) * 1000)
        await asyncio.sleep(random.uniform(0, 2 * gap_ms) / 1000)
    for _ in range(int((poll_s + 10) / 0.05)):  # the slowest reader gets a poll and 10 s
        if len(on_a) == len(on_b) == len(polled) == instances:
            break
        await asyncio.sleep(0.05)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await writer.aclose()
    report(instances, poll_s, sent, post_ms, on_a, on_b, polled)


def _latencies_ms(sent: dict[str, float], seen: dict[str, float]) -> list[float]:
    return [(seen[i] - t) * 1000 for i, t in sent.items() if i in seen]


def report(
    instances: int,
    poll_s: float,
    sent: dict[str, float],
    post_ms: list[float],
    on_a: dict[str, float],
    on_b: dict[str, float],
    polled: dict[str, float],
) -> None:
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}")
    print(f"{instances} registrations, one at a time, on node A of a two-node registry\n")
    print(f"{'reader (latency from just before the POST)':<58} {'seen':>6} {'p50':>11} {'p99':>11}")

    def line(name: str, samples: list[float], scale: float = 1.0) -> None:
        if not samples:
            print(f"{name:<58} {0:>6} {'-':>11} {'-':>11}")
            return
        p50, p99 = percentile(samples, 0.5) * scale, percentile(samples, 0.99) * scale
        unit, div = ("s", 1000.0) if p99 >= 10_000 else ("ms", 1.0)
        print(f"{name:<58} {len(samples):>6} {p50 / div:>9.2f}{unit:>2} {p99 / div:>9.2f}{unit:>2}")

    line("POST /eureka/apps/{APP} round trip (204)", post_ms)
    line("change stream on node A", _latencies_ms(sent, on_a))
    line("change stream on node B (via replication)", _latencies_ms(sent, on_b))
    polled_ms = _latencies_ms(sent, polled)
    line(f"GET /eureka/apps every {poll_s:g} s on node A (measured)", polled_ms)
    if poll_s != EUREKA_POLL_S:
        line(
            f"GET /eureka/apps every {EUREKA_POLL_S:g} s, Eureka's default (computed)",
            polled_ms,
            scale=EUREKA_POLL_S / poll_s,
        )
    print(
        "\nThe 30 s line scales the measured poll (uniform phase); a Spring Cloud client "
        "adds\nEureka's 30 s response cache and Ribbon's 30 s refresh on top (up to ~90 s)."
    )
    if polled_ms:
        print(f"mean of the measured poll: {statistics.fmean(polled_ms):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--poll-s", type=float, default=1.0, help="poll interval measured")
    parser.add_argument(
        "--gap-ms", type=float, default=20.0, help="mean pause between registrations"
    )
    args = parser.parse_args()
    asyncio.run(run(args.instances, args.poll_s, args.gap_ms))


if __name__ == "__main__":
    main()
