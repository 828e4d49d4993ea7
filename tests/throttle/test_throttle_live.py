"""The throttle as a user meets it: real gateways, the throttle service, a private Redis.

Four ``aimp-gateway`` processes share one Redis; limits are set through the
gateway's admin API (forwarded to ``aimp-throttle``, which publishes them).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from throttle_stack import SERVICE, Stack, admitted_within, load

pytestmark = pytest.mark.integration


def _call(url: str, token: str, path: str = "/echo/x") -> httpx.Response:
    return httpx.get(f"{url}/svc/{SERVICE}{path}", headers={"Authorization": f"Bearer {token}"},
                     timeout=10)  # fmt: skip


def test_a_policy_change_reaches_every_gateway_within_a_second(stack: Stack) -> None:
    """After PUT returns, every gateway enforces the new policy in under 1 s."""
    token = stack.token("prop-client")
    assert all(_call(g.url, token).status_code == 200 for g in stack.gateways)
    stack.put_policy("prop-tight", client_id="prop-client", rate=0.001, burst=1)
    changed = time.monotonic()
    seen: dict[str, float] = {}
    while len(seen) < len(stack.gateways):
        for g in stack.gateways:
            if g.url not in seen and _call(g.url, token).status_code == 429:
                seen[g.url] = time.monotonic() - changed
        assert time.monotonic() - changed < 1.0, f"only {len(seen)} gateways had it: {seen}"
        time.sleep(0.01)


def test_a_refusal_names_the_limit(stack: Stack) -> None:
    """A 429 is problem+json naming the policy, with Retry-After and the RateLimit headers;
    admitted answers carry the RateLimit headers too."""
    token = stack.token("hdr-client")
    stack.put_policy("hdr-tight", client_id="hdr-client", rate=0.5, burst=2, quota_day=1000)
    time.sleep(1.0)
    answers = [_call(stack.gw, token) for _ in range(4)]
    ok = next(r for r in answers if r.status_code == 200)
    assert ok.headers["ratelimit-policy"] == (
        '"hdr-tight";q=1;w=2;burst=2, "hdr-tight/day";q=1000;w=86400'
    )
    assert ok.headers["ratelimit"].startswith('"hdr-tight";r=')
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert body["status"] == 429 and body["request_id"] == refused.headers["x-request-id"]
    assert "over its rate limit 'hdr-tight' (0.5 calls/s, burst 2;" in body["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    assert '"hdr-tight";r=0;t=' in refused.headers["ratelimit"]


def test_exact_across_four_gateways_and_64_callers(stack: Stack) -> None:
    """100/s with burst 10 for 5 s through 4 gateways: at most 100*t+10, at least 99% of it."""
    stack.put_policy("load-100", client_id="load-client", rate=100, burst=10)
    time.sleep(1.2)  # the bucket is full and every gateway has the policy
    duration = 5.0
    start, calls = asyncio.run(
        load([g.url for g in stack.gateways], stack.token("load-client"), callers=64,
             duration_s=duration, warmup_token=stack.token("hdr-client"))
    )  # fmt: skip
    statuses = {c.status for c in calls}
    assert statuses <= {200, 429}, statuses
    admitted = [c for c in calls if c.status == 200]
    span = max(c.done for c in admitted) - start
    assert len(admitted) <= 100 * span + 10
    assert len(admitted) >= 0.99 * (100 * duration + 10)
    assert {c.gateway for c in admitted} == set(range(4))
    assert len(calls) > 3 * len(admitted)  # the load really exceeded the limit
    assert max(c.latency for c in calls) < 2.0


def test_daily_quota_admits_exactly_n_across_gateways(stack: Stack) -> None:
    """A quota of 150 calls a day, hit by 64 callers over 4 gateways, admits exactly 150."""
    stack.put_policy("quota-150", client_id="quota-client", rate=10_000, burst=10_000,
                     quota_day=150)  # fmt: skip
    time.sleep(1.0)
    _, calls = asyncio.run(
        load([g.url for g in stack.gateways], stack.token("quota-client"), callers=64,
             duration_s=1.0)
    )  # fmt: skip
    assert sum(c.status == 200 for c in calls) == 150
    assert sum(c.status == 429 for c in calls) == len(calls) - 150
    usage = httpx.get(f"{stack.gw}/admin/throttle/usage/quota-client",
                      headers=stack.admin_headers(), timeout=10).json()  # fmt: skip
    assert [(u["name"], u["used_day"]) for u in usage["limits"]] == [("quota-150", 150)]


def test_redis_outage_fails_open_and_recovers(stack: Stack) -> None:
    """Redis stopped under load: calls keep being served by the local limiter, none hangs,
    and 2 s after Redis returns the limit is exact again."""
    stack.put_policy("outage-100", client_id="outage-client", rate=100, burst=10)
    time.sleep(1.2)
    marks: dict[str, float] = {}
    duration = 7.5

    async def scenario() -> tuple[float, list]:  # type: ignore[type-arg]
        async def outage() -> None:
            await asyncio.sleep(0.7)
            marks["down"] = time.perf_counter()
            await asyncio.to_thread(stack.redis.stop)
            await asyncio.sleep(2.5)
            await asyncio.to_thread(stack.redis.start)
            marks["up"] = time.perf_counter()

        urls = [g.url for g in stack.gateways]
        traffic = load(urls, stack.token("outage-client"), callers=32, duration_s=duration,
                       timeout_s=3.0)  # fmt: skip
        (start, calls), _ = await asyncio.gather(traffic, outage())
        return start, calls

    start, calls = asyncio.run(scenario())
    end = start + duration
    assert {c.status for c in calls} <= {200, 429}, {c.status for c in calls}
    assert max(c.latency for c in calls) < 1.0, "a call hung"
    down_from, down_to = marks["down"] + 0.5, marks["up"]
    served = admitted_within(calls, down_from, down_to)
    # Fail open: each of 4 gateways admits 100/4 per second (+ a local burst of 3).
    assert 0.5 * 100 * (down_to - down_from) <= served <= 100 * (down_to - down_from) + 4 * 3
    exact_from = marks["up"] + 2.0
    exact = admitted_within(calls, exact_from, end)
    assert exact <= 100 * (end - exact_from) + 10
    assert exact >= 0.95 * 100 * (end - exact_from) - 10


def test_concurrency_leases_free_when_calls_end_or_a_gateway_dies(stack: Stack) -> None:
    """A concurrency cap of 3 holds across gateways; a killed gateway's slots free by expiry."""
    stack.put_policy("conc-3", client_id="conc-client", rate=1000, burst=100, concurrency=3)
    time.sleep(1.0)
    token = stack.token("conc-client")
    victim, others = stack.gateways[-1], stack.gateways[:-1]

    async def slow_calls(url: str, n: int, seconds: float) -> list[int]:
        async with httpx.AsyncClient(timeout=30) as http:
            answers = await asyncio.gather(*(
                http.get(f"{url}/svc/{SERVICE}/slow/{seconds}",
                         headers={"Authorization": f"Bearer {token}"})
                for _ in range(n)
            ))  # fmt: skip
        return [a.status_code for a in answers]

    statuses = asyncio.run(slow_calls(others[0].url, 5, 0.5))
    assert sorted(statuses) == [200, 200, 200, 429, 429]
    assert _call(others[1].url, token).status_code == 200  # released at the end of each call

    async def crash() -> None:
        held = asyncio.create_task(slow_calls(victim.url, 3, 20))
        await asyncio.sleep(0.5)
        assert _call(others[0].url, token).status_code == 429  # all 3 slots held
        victim.kill9()
        held.cancel()

    asyncio.run(crash())
    killed = time.monotonic()
    while _call(others[0].url, token).status_code == 429:
        assert time.monotonic() - killed < 4.0, "the dead gateway's leases never expired"
        time.sleep(0.1)
    assert time.monotonic() - killed < 4.0
