"""The Lua script against real Redis: identical to the Python mirror; the limiter never hangs."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimp_core.net import free_port
from aimp_core.ratelimit import lua
from aimp_core.ratelimit.algorithm import LimitState, decide, release
from aimp_core.ratelimit.calendar import month_end_us
from aimp_core.ratelimit.engine import MEMBERS_KEY, Compiled, Limiter
from aimp_core.ratelimit.limits import LimitSpec
from aimp_core.ratelimit.policies import (
    Applied,
    LimitFields,
    PolicyRule,
    Resolver,
    Snapshot,
)
from aimp_core.ratelimit.sync import Follower, publish

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000
#: Starts that put day and month boundaries (and a leap day) inside a run.
STARTS = [T0, month_end_us(T0) - 300_000, 951_868_800_000_000 - 200_000]

specs_strategy = st.builds(
    LimitSpec,
    interval_us=st.sampled_from([0, 1, 997, 50_000, 1_000_000]),
    burst=st.integers(min_value=1, max_value=4),
    warmup_us=st.sampled_from([0, 0, 150_000, 2_000_000]),
    cold_milli=st.sampled_from([1000, 2500, 3000, 10_000]),
    warm_epoch_us=st.sampled_from([0, T0 + 100_000]),
    quota_day=st.integers(min_value=0, max_value=5),
    quota_month=st.integers(min_value=0, max_value=7),
    concurrency=st.integers(min_value=0, max_value=3),
)


@pytest.fixture(scope="module")
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _stored(r: redis.Redis, skey: str, lkey: str | None) -> LimitState:
    raw = r.hmget(skey, ["tat", "ws", "la", "dp", "dc", "mp", "mc"])
    tat, ws, la, dp, dc, mp, mc = (None if v is None else int(v) for v in raw)
    leases = {m.decode(): int(s) for m, s in r.zrange(lkey, 0, -1, withscores=True)} if lkey else {}
    return LimitState(tat, ws, la, dp, dc or 0, mp, mc or 0, leases)


def _comparable(state: LimitState, spec: LimitSpec) -> tuple[object, ...]:
    """The fields the script stores for this spec (it writes nothing it does not use)."""
    warm = spec.interval_us > 0 and spec.warmup_us > 0
    return (
        state.tat_us if spec.interval_us else None,
        state.warm_start_us if warm else None,
        state.last_us if warm else None,
        state.day,
        state.day_count,
        state.month,
        state.month_count,
        dict(state.leases),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=st.lists(specs_strategy, min_size=1, max_size=4),
    start=st.sampled_from(STARTS),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=120_000), st.booleans()),
        min_size=1,
        max_size=30,
    ),
)
def test_lua_equals_python(
    sync_redis: redis.Redis, specs: list[LimitSpec], start: int, steps: list[tuple[int, bool]]
) -> None:
    """For any limits and arrivals, the script's replies and stored state equal the mirror's."""
    script = sync_redis.register_script(lua.CHECK)
    prefix = f"test:{uuid.uuid4().hex}"
    keys: list[str] = []
    pairs: list[tuple[str, str | None]] = []
    for i, spec in enumerate(specs):
        skey, lkey = f"{prefix}:s{i}", f"{prefix}:l{i}" if spec.concurrency else None
        keys += [skey] + ([lkey] if lkey else [])
        pairs.append((skey, lkey))
    tail = [v for spec in specs for v in spec.argv()]
    states = [LimitState() for _ in specs]
    now, held = start, []
    for i, (gap, end_one) in enumerate(steps):
        now += gap
        if end_one and held:
            lease = held.pop(0)
            states = [release(s, lease) for s in states]
            for _, lkey in pairs:
                if lkey:
                    sync_redis.zrem(lkey, lease)
        reply = script(keys=keys, args=[now, f"L{i}", 300_000, len(specs), *tail])
        expected = decide(specs, states, now, lease_id=f"L{i}", lease_ttl_us=300_000)
        assert [int(v) for v in reply] == expected.as_reply(), (i, now)
        states = list(expected.states)
        if expected.allowed:
            held.append(f"L{i}")
        for spec, state, (skey, lkey) in zip(specs, states, pairs, strict=True):
            assert _comparable(_stored(sync_redis, skey, lkey), spec) == _comparable(state, spec)
    sync_redis.delete(*keys)


def _compiled(*fields: LimitFields, client: str = "c") -> Compiled:
    rules = tuple(
        PolicyRule(f"p{i}-{uuid.uuid4().hex[:6]}", client, None if i == 0 else f"s{i}", False, f)
        for i, f in enumerate(fields)
    )
    applied: list[Applied] = []
    resolver = Resolver(Snapshot(policies=rules), None)
    for i in range(len(fields)):
        applied += [a for a in resolver.applicable(client, f"s{i}") if a not in applied]
    return Compiled.of(applied, time.time_ns() // 1000)


async def test_limiter_consumes_real_redis_and_releases(redis_url: str) -> None:
    """Through the limiter, a burst of 3 and a concurrency cap of 2 hold in Redis; release frees."""
    limiter = Limiter(redis.asyncio.Redis.from_url(redis_url, socket_timeout=1.0))
    compiled = _compiled(LimitFields(rate=0.001, burst=3, concurrency=2))
    a, b = await limiter.check(compiled), await limiter.check(compiled)
    c = await limiter.check(compiled)
    assert (a.allowed, b.allowed, c.allowed) == (True, True, False)
    assert c.refused_by is not None and c.kind is not None and c.kind.name == "CONCURRENCY"
    await limiter.release(a)
    await limiter.release(a)  # idempotent
    d = await limiter.check(compiled)
    assert d.allowed and d.numbers[0].rate_remaining == 0
    e = await limiter.check(compiled)
    assert not e.allowed and e.kind is not None and e.kind.name == "RATE"
    usage = await limiter.usage(compiled)
    assert usage[1:] == [0, 3, 3, 2]
    await limiter.redis.aclose()


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


@pytest.mark.parametrize("hung", [False, True])
async def test_redis_away_never_hangs_and_shares_the_limit(hung: bool, silent_peer: str) -> None:
    """Redis refused or hung: one socket timeout at most, then local decisions at rate/members."""
    url = silent_peer if hung else f"redis://127.0.0.1:{free_port()}/0"
    client = redis.asyncio.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)
    limiter = Limiter(client, probe_interval_s=0.05)
    limiter.members = 2
    open_ = _compiled(LimitFields(rate=10, burst=4, on_redis_down="open"))
    closed = _compiled(LimitFields(rate=10, burst=4, on_redis_down="closed"))
    start = time.perf_counter()
    first = await limiter.check(open_)
    took_first = time.perf_counter() - start
    start = time.perf_counter()
    verdicts = await asyncio.gather(*(limiter.check(open_) for _ in range(50)))
    refused = await limiter.check(closed)
    took_rest = time.perf_counter() - start
    await client.aclose()
    assert took_first < 0.5 and took_rest < 0.05
    assert first.mode == "local" and refused.mode == "closed" and not refused.allowed
    # Half the burst (2 of 4) for this member of two; the rest wait for the shared rate.
    assert sum(v.allowed for v in [first, *verdicts]) == 2


async def test_limiter_recovers_by_itself(redis_url: str) -> None:
    """After an outage the upkeep task probes Redis and exact decisions resume within ~0.1 s."""
    limiter = Limiter(redis.asyncio.Redis.from_url(redis_url, socket_timeout=1.0),
                      probe_interval_s=0.05, heartbeat_s=0.1)  # fmt: skip
    await limiter.start()
    compiled = _compiled(LimitFields(rate=1000, burst=10))
    limiter._went_down(ConnectionError("simulated"))
    assert (await limiter.check(compiled)).mode == "local"
    await asyncio.sleep(0.2)
    assert limiter.available and (await limiter.check(compiled)).mode == "redis"
    assert await limiter.redis.zscore(MEMBERS_KEY, limiter.member_id) is not None
    # A non-member (the throttle service) counts the members without joining them.
    watcher = Limiter(limiter.redis, member=False)
    await watcher.start()
    assert await limiter.redis.zscore(MEMBERS_KEY, watcher.member_id) is None
    assert watcher.members >= 1  # the limiter above is live
    await watcher.stop()
    await limiter.stop()
    assert await limiter.redis.zscore(MEMBERS_KEY, limiter.member_id) is None
    await limiter.redis.aclose()


async def test_follower_sees_a_change_within_a_second(redis_url: str) -> None:
    """A published snapshot reaches a follower in well under 1 s; a missing one changes nothing."""
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=1.0)
    seen: list[tuple[float, Snapshot]] = []
    follower = Follower(client, lambda s: seen.append((time.perf_counter(), s)), poll_s=0.5)
    await follower.start()
    rule = PolicyRule("p", "c", None, False, LimitFields(rate=5, burst=1))
    snapshot = Snapshot(policies=(rule,))
    sent = time.perf_counter()
    await publish(client, snapshot)
    while not seen or seen[-1][1] != snapshot:
        assert time.perf_counter() - sent < 1.0, "the change did not arrive within 1 s"
        await asyncio.sleep(0.005)
    assert seen[-1][0] - sent < 0.2  # pub/sub, not the periodic check
    await client.delete("aimp:thr:config", "aimp:thr:config:version")
    await asyncio.sleep(0.6)
    assert seen[-1][1] == snapshot and follower.version == snapshot.version
    await follower.stop()
    await client.aclose()


def test_lua_equals_python_when_a_spec_changes(sync_redis: redis.Redis) -> None:
    """Switching a limit's numbers between calls gives the same replies in Lua and Python."""
    script = sync_redis.register_script(lua.CHECK)
    key = f"test:{uuid.uuid4().hex}:s"
    specs = [
        LimitSpec.of(0.001, 1),
        LimitSpec.of(10, 5),
        LimitSpec.of(10, 5, warmup_s=2, cold_factor=10),
        LimitSpec.of(0.5, 2),
        LimitSpec.of(1000, 3),
    ]
    state, now = LimitState(), T0
    for i in range(40):
        spec = specs[i % len(specs)]
        now += 37_000 * (i % 4)
        reply = script(keys=[key], args=[now, "", 0, 1, *spec.argv()])
        expected = decide([spec], [state], now)
        assert [int(v) for v in reply] == expected.as_reply(), i
        state = expected.states[0]
        assert _comparable(_stored(sync_redis, key, None), spec) == _comparable(state, spec)
    sync_redis.delete(key)
