"""The throttle against real Redis: the Lua GCRA agrees with the Python one; outages never hang."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from aimp_core.errors import ServiceUnavailable, TooManyRequests
from aimp_core.net import free_port
from aimp_gateway.gcra import Limit, decide
from aimp_gateway.throttle import KEY_PREFIX, Throttle, make_redis

pytestmark = pytest.mark.integration


def _fail_open_total() -> float:
    return REGISTRY.get_sample_value("aimp_gateway_throttle_fail_open_total") or 0.0


@pytest.fixture
def silent_peer() -> Iterator[str]:
    """A TCP peer that accepts connections and never answers (a hung Redis)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
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


async def test_lua_script_matches_python_gcra(redis_url: str) -> None:
    """In Redis a client gets exactly `burst` calls, counting down, then a refusal like decide()."""
    redis = make_redis(redis_url, socket_timeout_s=1.0)
    limit = Limit.per_second(0.001, 5)  # one call per 1000 s: no refill during the test
    throttle = Throttle(redis, limit, fail_open=True, retry_after_outage_s=1.0)
    client = f"lua-{uuid.uuid4().hex}"
    try:
        remaining = []
        for _ in range(limit.burst):
            raw = await throttle._script(keys=[KEY_PREFIX + client], args=throttle._args)
            assert raw[0] == 1
            remaining.append(raw[1])
        tat = None
        expected = []
        for _ in range(limit.burst):
            d = decide(tat, 0, limit)
            tat = d.tat_us
            expected.append(d.remaining)
        assert remaining == expected == [4, 3, 2, 1, 0]
        with pytest.raises(TooManyRequests) as err:
            await throttle.check(client)
        retry_after = int(err.value.headers["Retry-After"])
        assert limit.interval_us / 1e6 - 5 <= retry_after <= limit.interval_us / 1e6 + 1
        ttl_ms = await redis.pttl(KEY_PREFIX + client)
        assert 0 < ttl_ms <= limit.burst * limit.interval_us // 1000 + 1
        await throttle.check(f"other-{client}")  # other clients have their own bucket
    finally:
        await redis.aclose()


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_never_hangs(fail_open: bool) -> None:
    """With nothing listening, a check returns at once: admitted (open) or 503 (closed)."""
    redis = make_redis(f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=0.25)
    throttle = Throttle(redis, Limit.per_second(10, 1), fail_open=fail_open, retry_after_outage_s=5)
    before = _fail_open_total()
    start = time.perf_counter()
    try:
        for _ in range(20):
            if fail_open:
                await throttle.check("c")
            else:
                with pytest.raises(ServiceUnavailable):
                    await throttle.check("c")
    finally:
        await redis.aclose()
    assert time.perf_counter() - start < 0.5
    assert _fail_open_total() - before == (20 if fail_open else 0)


async def test_hung_redis_costs_one_timeout_per_outage_period(silent_peer: str) -> None:
    """A Redis that never answers costs one socket timeout, then calls skip it for the period."""
    redis = make_redis(silent_peer, socket_timeout_s=0.25)
    throttle = Throttle(redis, Limit.per_second(10, 1), fail_open=True, retry_after_outage_s=5)
    before = _fail_open_total()
    try:
        start = time.perf_counter()
        await throttle.check("c")
        first = time.perf_counter() - start
        start = time.perf_counter()
        await asyncio.gather(*(throttle.check("c") for _ in range(50)))
        rest = time.perf_counter() - start
    finally:
        await redis.aclose()
    assert 0.2 <= first < 0.6
    assert rest < 0.05
    assert _fail_open_total() - before == 51
