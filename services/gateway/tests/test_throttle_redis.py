"""The gateway's throttle against real Redis: rules applied within 1 s, headers, outages."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from aimp_core.errors import ServiceUnavailable, TooManyRequests
from aimp_core.net import free_port
from aimp_core.ratelimit.policies import LimitFields, PolicyRule, Snapshot
from aimp_core.ratelimit.sync import publish
from aimp_gateway.throttle import Throttle, make_redis

pytestmark = pytest.mark.integration

DEFAULT = LimitFields(rate=0.01, burst=3)


def _counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def private_db(url: str, k: int) -> str:
    """Another database of the same server (never 0, never ``url``'s own for k in 1..3)."""
    base, _, db = url.rpartition("/")
    return f"{base}/{((int(db or 0) - 1 + k) % 15) + 1}"


@pytest.fixture
async def throttle(redis_url: str) -> AsyncIterator[Throttle]:
    """A started throttle on its own Redis database (rules published here reach no gateway)."""
    t = Throttle(make_redis(private_db(redis_url, 2), socket_timeout_s=1.0), DEFAULT,
                 rules_poll_s=0.5)  # fmt: skip
    await t.start()
    yield t
    await t.stop()
    await t.redis.aclose()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_default_limit_then_a_published_override(throttle: Throttle) -> None:
    """Without rules a client gets the default; a published policy replaces it within 1 s."""
    client = unique("c")
    tickets = [await throttle.check(client, "svc") for _ in range(3)]
    assert all(t is not None for t in tickets)
    assert dict(tickets[0].headers)[b"ratelimit-policy"] == b'"client-rate";q=1;w=100;burst=3'
    assert dict(tickets[2].headers)[b"ratelimit"] == b'"client-rate";r=0;t=100'
    with pytest.raises(TooManyRequests) as refused:
        await throttle.check(client, "svc")
    assert "over its rate limit 'client-rate'" in refused.value.detail
    assert refused.value.headers["Retry-After"] == "100"

    pid = unique("vip")
    rule = PolicyRule(pid, client, None, False, LimitFields(rate=1000, burst=5, quota_day=9))
    start = time.monotonic()
    await publish(throttle.redis, Snapshot(policies=(rule,)))
    while True:
        try:
            ticket = await throttle.check(client, "svc")
            break
        except TooManyRequests:
            assert time.monotonic() - start < 1.0, "the policy did not apply within 1 s"
            await asyncio.sleep(0.01)
    assert ticket is not None
    headers = dict(ticket.headers)
    assert headers[b"ratelimit-policy"].decode() == (
        f'"{pid}";q=1000;w=1;burst=5, "{pid}/day";q=9;w=86400'
    )
    assert f'"{pid}/day";r=8;t='.encode() in headers[b"ratelimit"]


async def test_concurrency_slot_is_held_until_release(throttle: Throttle) -> None:
    """A per-client concurrency cap of 1: the second call waits for the first ticket's release."""
    client, pid = unique("c"), unique("one-at-a-time")
    limits = LimitFields(rate=1000, burst=100, concurrency=1)
    await publish(
        throttle.redis, Snapshot(policies=(PolicyRule(pid, client, "svc", False, limits),))
    )
    await throttle.follower.refresh()
    first = await throttle.check(client, "svc")
    with pytest.raises(TooManyRequests) as refused:
        await throttle.check(client, "svc")
    assert "already has 1 calls in flight" in refused.value.detail
    await throttle.release(first)
    await throttle.release(first)
    second = await throttle.check(client, "svc")
    assert second is not None and second.verdict.lease_id
    await throttle.release(second)


@pytest.fixture
def silent_peer() -> Iterator[str]:
    """A TCP peer that accepts connections and never answers (a hung Redis)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    stop.set()
    thread.join(2)
    for c in conns:
        c.close()
    sock.close()


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_never_hangs(fail_open: bool) -> None:
    """With nothing listening, checks return at once: through the local limiter, or 503."""
    redis = make_redis(f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=0.25)
    default = LimitFields(rate=1000, burst=100, on_redis_down="open" if fail_open else "closed")
    throttle = Throttle(redis, default)
    await throttle.start()
    opened, closed = (_counter(f"aimp_gateway_throttle_fail_{k}_total") for k in ("open", "closed"))
    start = time.perf_counter()
    try:
        for _ in range(20):
            if fail_open:
                assert await throttle.check("c", "svc") is not None
            else:
                with pytest.raises(ServiceUnavailable, match="fails closed"):
                    await throttle.check("c", "svc")
    finally:
        await throttle.stop()
        await redis.aclose()
    assert time.perf_counter() - start < 0.5
    assert _counter("aimp_gateway_throttle_fail_open_total") - opened == (20 if fail_open else 0)
    assert _counter("aimp_gateway_throttle_fail_closed_total") - closed == (0 if fail_open else 20)


async def test_hung_redis_costs_one_timeout(silent_peer: str) -> None:
    """A Redis that never answers costs one socket timeout; later calls are decided at once."""
    redis: Redis = make_redis(silent_peer, socket_timeout_s=0.25)
    throttle = Throttle(redis, LimitFields(rate=1000, burst=100))
    try:
        start = time.perf_counter()
        await throttle.check("c", "svc")
        first = time.perf_counter() - start
        start = time.perf_counter()
        await asyncio.gather(*(throttle.check("c", "svc") for _ in range(50)))
        rest = time.perf_counter() - start
    finally:
        await redis.aclose()
    assert 0.2 <= first < 0.6
    assert rest < 0.05
