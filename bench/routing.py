"""Routing under change: registration-to-routable, crash-to-ejection, rolling restart, sidecar cost.

Never part of the tests. Starts everything it needs on free loopback ports under a
temporary directory (the aimp registry, Redis via aimp_cli.infra, Tansu, the
gateway, native iris pods behind aimp-sidecar) and stops it all at the end.

    uv run python bench/routing.py [--registrations 20] [--crashes 5] [--calls 1000]

(a) registration-to-routable: with one replica serving a steady load through the
    gateway, a new pod + sidecar is started; the time from its UP registration
    (seen on the registry's change stream) to the first call through the gateway
    that it serves (when that call was sent, and when it was answered). The load's
    rate bounds the resolution (2 replicas at 200/s: a call reaches each every
    ~10 ms).
(b) crash-to-ejection: three replicas under 100 calls/s; kill -9 of one pod and its
    sidecar; the time until the gateway ejected it (GET /admin/routing polled
    every 10 ms; its remaining ejection time dates the ejection to the ms) and
    until its last attempt there (the poll at which the gateway's failure counter
    last moved: an upper bound, one poll ~15 ms coarse), and whether any call
    went there later than 3 s after the kill.
(c) rolling restart of 3 replicas under 200 calls/s (SIGTERM each sidecar, stop its
    pod, start a replacement, wait for UP): calls sent, calls failed.
(d) sidecar overhead: sequential infer calls (httpx, keep-alive) direct to the pod,
    through the sidecar, and through gateway + sidecar: p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "routing"))

from machine import cpu_model
from routing_stack import (
    BIN,
    INFER_BODY,
    Gateway,
    Load,
    PodFactory,
    RegistryWatch,
    Replica,
    export_iris,
    failures,
    pod_runtime,
    spawn,
    start_gateway,
    stop,
)

from aimp_cli import infra
from aimp_core.net import free_port, port_open, wait_http_ok


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.999999) - 1))]


def ms(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    return (
        f"p50 {pct(samples, 0.5) * 1000:8.2f} ms   p99 {pct(samples, 0.99) * 1000:8.2f} ms   "
        f"max {max(samples) * 1000:8.2f} ms   (n={len(samples)})"
    )


# -- the platform parts -------------------------------------------------------------------


@contextmanager
def platform_parts(tmp: Path) -> Iterator[tuple[str, str, str]]:
    """Registry, Redis and Tansu on free ports: (registry_url, redis_url, kafka_bootstrap)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        reg_port = free_port()
        env = {
            **os.environ,
            "AIMP_HOME": str(tmp / "registry"),
            "AIMP_REGISTRY_PORT": str(reg_port),
            "AIMP_LOG_LEVEL": "WARNING",
        }
        procs.append(spawn([str(BIN / "aimp-registry")], env, tmp / "registry.log"))
        if infra.redis_answers(*infra.SYSTEM_REDIS):
            redis_url = f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
        else:
            redis_port = free_port()
            argv = infra.redis_server_argv(redis_port, tmp / "redis")
            procs.append(spawn(argv, dict(os.environ), tmp / "redis.log"))
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            _wait(lambda: infra.redis_answers("127.0.0.1", redis_port), "redis")
        kafka_port = free_port()
        procs.append(spawn(infra.tansu_argv(kafka_port), dict(os.environ), tmp / "tansu.log"))
        _wait(lambda: port_open("127.0.0.1", kafka_port), "tansu")
        wait_http_ok(f"http://127.0.0.1:{reg_port}/healthz", timeout_s=30)
        yield f"http://127.0.0.1:{reg_port}/eureka", redis_url, f"127.0.0.1:{kafka_port}"
    finally:
        for proc in reversed(procs):
            stop(proc)


def _wait(check: object, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def _load(gw: Gateway, service: str, rate: float) -> Load:
    return Load(
        f"{gw.url}/v2/models/{service}/infer",
        {"Authorization": f"Bearer {gw.token()}", "Content-Type": "application/json"},
        rate,
    )


async def _start(pods: PodFactory, watch: RegistryWatch, service: str, n: int) -> list[Replica]:
    replicas = [pods.start(service) for _ in range(n)]
    await watch.wait_up([r.instance_id for r in replicas], timeout_s=60)
    return replicas


# -- (a) registration to routable ----------------------------------------------------------


async def registration_to_routable(
    gw: Gateway, pods: PodFactory, registry_url: str, count: int
) -> None:
    service = f"reg-{random.randrange(16**6):06x}"
    routed: list[float] = []
    delays: list[float] = []
    async with RegistryWatch(registry_url) as watch:
        await _start(pods, watch, service, 1)  # the replica already serving
        load = _load(gw, service, 200)
        running = asyncio.create_task(load.run(max_duration_s=3600))
        previous: Replica | None = None
        for _ in range(count):
            new = pods.start(service)
            await watch.wait_up([new.instance_id], timeout_s=60)
            up_at = watch.up_at[new.instance_id]
            deadline = time.perf_counter() + 5.0
            while time.perf_counter() < deadline:
                served = [c for c in load.calls if c.ok and c.instance == new.instance_id]
                if served:
                    first = min(served, key=lambda c: c.start)
                    routed.append(first.start - up_at)
                    delays.append(first.end - up_at)
                    break
                await asyncio.sleep(0.01)
            if previous is not None:
                await asyncio.to_thread(previous.stop)
            previous = new
        load.stop()
        calls = await running
    print("(a) registration-to-routable (the sidecar's UP registration -> its first call)")
    print(f"    first call sent:     {ms(routed)}")
    print(f"    first call answered: {ms(delays)}")
    print(
        "    (sent: the load generator sent it, the gateway routed it at once; a negative value\n"
        "     is a call sent before the UP that the gateway routed after it. answered: includes\n"
        "     the new sidecar's first connection to its pod and first token check.)"
    )
    print(f"    load: {len(calls)} calls at 200/s, {len(failures(calls))} failed")
    missing = count - len(delays)
    if missing:
        print(f"    {missing} registrations got no call within 5 s")


# -- (b) crash to ejection -----------------------------------------------------------------


async def _poll_crash(
    gw: Gateway,
    admin: dict[str, str],
    service: str,
    victim: str,
    killed_at: float,
    watch_s: float,
) -> tuple[float | None, float | None, float, float]:
    """(ejected after, last attempt after, attempts within 3 s, attempts after 3 s)."""
    base_ejection_s = 5.0  # the gateway's default (AIMP_GATEWAY_OUTLIER_BASE_EJECTION_S)
    ejected_after: float | None = None
    last_attempt: float | None = None
    attempts = 0.0
    at_3s: float | None = None
    async with httpx.AsyncClient(timeout=5) as http:
        while (now := time.perf_counter()) - killed_at < watch_s:
            routing = (await http.get(f"{gw.url}/admin/routing", headers=admin)).json()
            rows = routing["services"][service]["instances"]
            row = next(r for r in rows if r["instance_id"] == victim)
            if row["ejected"] and ejected_after is None:
                # the first ejection lasts the base time: its start, to the millisecond
                ejected_after = now - killed_at - (base_ejection_s - row["ejected_for_s"])
            text = (await http.get(f"{gw.url}/metrics")).text
            count = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("aimp_gateway_upstream_failures_total{")
                and f'service="{service}"' in line
            )
            if count > attempts:
                attempts, last_attempt = count, now - killed_at
            if at_3s is None and now - killed_at >= 3.0:
                at_3s = attempts
            await asyncio.sleep(0.01 if now - killed_at < 1.0 else 0.2)
    return ejected_after, last_attempt, at_3s or attempts, attempts - (at_3s or attempts)


async def crash_to_ejection(gw: Gateway, pods: PodFactory, registry_url: str, crashes: int) -> None:
    service = f"crash-{random.randrange(16**6):06x}"
    ejected: list[float] = []
    last: list[float] = []
    late_attempts = 0.0
    failed_calls = 0
    async with RegistryWatch(registry_url) as watch:
        replicas = await _start(pods, watch, service, 3)
        for _ in range(crashes):
            load = _load(gw, service, 100)
            running = asyncio.create_task(load.run(max_duration_s=3600))
            await asyncio.sleep(1.0)
            victim = replicas.pop(0)
            admin = gw.admin_headers()  # before the kill: a password grant takes a while
            await asyncio.sleep(0.5)
            killed_at = time.perf_counter()
            await asyncio.to_thread(victim.kill9)
            result = await _poll_crash(gw, admin, service, victim.instance_id, killed_at, 7.0)
            load.stop()
            calls = await running
            failed_calls += len(failures(calls))
            if result[0] is not None:
                ejected.append(result[0])
            if result[1] is not None:
                last.append(result[1])
            late_attempts += result[3]
            replicas += await _start(pods, watch, service, 1)
    print("(b) crash-to-ejection (kill -9 of pod + sidecar under 100 calls/s, 3 replicas)")
    print(f"    ejected after:       {ms(ejected)}")
    print(f"    last attempt after:  {ms(last)}")
    print(f"    attempts later than 3 s after the kill: {late_attempts:g}")
    print(f"    calls failed (in flight in the dying sidecar): {failed_calls} in {crashes} crashes")


# -- (c) rolling restart -----------------------------------------------------------------------


async def rolling_restart(gw: Gateway, pods: PodFactory, registry_url: str, rate: float) -> None:
    service = f"roll-{random.randrange(16**6):06x}"
    async with RegistryWatch(registry_url) as watch:
        old = await _start(pods, watch, service, 3)
        load = _load(gw, service, rate)
        running = asyncio.create_task(load.run(max_duration_s=600))
        await asyncio.sleep(1.0)
        started = time.perf_counter()
        for replica in old:
            replica.sigterm_sidecar()
            await asyncio.to_thread(replica.sidecar.wait, 60)
            await asyncio.to_thread(replica.stop)
            fresh = pods.start(service)
            await watch.wait_up([fresh.instance_id], timeout_s=60)
        took = time.perf_counter() - started
        await asyncio.sleep(1.0)
        load.stop()
        calls = await running
    latencies = [c.end - c.start for c in calls if c.ok]
    print(f"(c) rolling restart of 3 replicas under {rate:g} calls/s ({took:.1f} s)")
    print(f"    calls: {len(calls)}   failed: {len(failures(calls))}   late sends: {load.late}")
    print(f"    latency during the run: {ms(latencies)}")
    for call in failures(calls)[:5]:
        print(f"    failed: {call.status} {call.error}")


# -- (d) sidecar overhead --------------------------------------------------------------------------


def sequential(url: str, headers: dict[str, str], calls: int) -> list[float]:
    out = []
    with httpx.Client(timeout=10) as http:
        for i in range(calls + 100):
            start = time.perf_counter()
            resp = http.post(url, content=INFER_BODY, headers=headers)
            took = time.perf_counter() - start
            resp.raise_for_status()
            if i >= 100:  # the first 100 warm up connections and caches
                out.append(took)
    return out


async def sidecar_overhead(gw: Gateway, pods: PodFactory, registry_url: str, calls: int) -> None:
    service = f"cost-{random.randrange(16**6):06x}"
    async with RegistryWatch(registry_url) as watch:
        (replica,) = await _start(pods, watch, service, 1)
    path = f"/v2/models/{service}/infer"
    headers = {"Authorization": f"Bearer {gw.token()}", "Content-Type": "application/json"}
    rows = [
        ("direct to the pod", replica.pod_url + path),
        ("through the sidecar", replica.sidecar_url + path),
        ("through gateway + sidecar", gw.url + path),
    ]
    results = {name: sequential(url, headers, calls) for name, url in rows}
    direct, sidecar = results["direct to the pod"], results["through the sidecar"]
    print(f"(d) sidecar overhead: {calls} sequential infer calls each (httpx, keep-alive)")
    for name, samples in results.items():
        print(f"    {name:<27} {ms(samples)}")
    print(
        f"    sidecar / direct: p50 x{pct(sidecar, 0.5) / pct(direct, 0.5):.2f}  "
        f"p99 x{pct(sidecar, 0.99) / pct(direct, 0.99):.2f}   added p50 "
        f"{(statistics.median(sidecar) - statistics.median(direct)) * 1000:.2f} ms"
    )


async def run(args: argparse.Namespace) -> None:
    runtime = pod_runtime()
    if runtime is None:
        raise SystemExit("no native pod built: run inference/cpp/build.sh (or the Java one)")
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}")
    print(f"pods: {runtime[1]} ({runtime[0].name}) behind aimp-sidecar, iris logistic regression\n")
    with tempfile.TemporaryDirectory(prefix="aimp-bench-routing-") as tmp_name:
        tmp = Path(tmp_name)
        model = export_iris(tmp / "model")
        with platform_parts(tmp) as (registry_url, redis_url, kafka):
            gw = start_gateway(
                tmp / "gateway", registry_url=registry_url, redis_url=redis_url,
                kafka_bootstrap=kafka, AIMP_GATEWAY_RATE_PER_S="100000",
                AIMP_GATEWAY_RATE_BURST="10000",
            )  # fmt: skip
            pods = PodFactory(model, registry_url, gw, tmp / "pods")
            try:
                if "a" in args.parts:
                    await registration_to_routable(gw, pods, registry_url, args.registrations)
                if "b" in args.parts:
                    await crash_to_ejection(gw, pods, registry_url, args.crashes)
                if "c" in args.parts:
                    await rolling_restart(gw, pods, registry_url, args.rate)
                if "d" in args.parts:
                    await sidecar_overhead(gw, pods, registry_url, args.calls)
            finally:
                pods.stop_all()
                gw.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registrations", type=int, default=20, help="(a) samples")
    parser.add_argument("--crashes", type=int, default=5, help="(b) samples")
    parser.add_argument("--rate", type=float, default=200.0, help="(c) calls per second")
    parser.add_argument("--calls", type=int, default=1000, help="(d) sequential calls per path")
    parser.add_argument("--parts", default="abcd", help="which measurements, e.g. 'bd'")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
