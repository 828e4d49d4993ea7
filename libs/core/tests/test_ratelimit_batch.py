"""Micro-batched checks against real Redis: one script call per loop turn, exact per call."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimp_core.ratelimit import lua
from aimp_core.ratelimit.algorithm import LimitState, decide
from aimp_core.ratelimit.engine import Compiled, Limiter
from aimp_core.ratelimit.limits import LimitSpec
from aimp_core.ratelimit.policies import Applied, LimitFields, PolicyRule, Resolver, Snapshot

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000

specs_strategy = st.builds(
    LimitSpec,
    interval_us=st.sampled_from([0, 997, 50_000, 1_000_000]),
    burst=st.integers(min_value=1, max_value=4),
    warmup_us=st.sampled_from([0, 0, 150_000]),
    cold_milli=st.sampled_from([1000, 3000]),
    warm_epoch_us=st.just(0),
    quota_day=st.integers(min_value=0, max_value=5),
    quota_month=st.integers(min_value=0, max_value=7),
    concurrency=st.integers(min_value=0, max_value=3),
)


@pytest.fixture(scope="module")
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=st.lists(specs_strategy, min_size=1, max_size=3),
    # Per check: which of the (shared) limits it is subject to, and the clock's step.
    checks=st.lists(
        st.tuples(st.sets(st.integers(0, 2), min_size=1), st.integers(0, 60_000)),
        min_size=1,
        max_size=12,
    ),
)
def test_check_many_equals_checks_one_by_one(
    sync_redis: redis.Redis, specs: list[LimitSpec], checks: list[tuple[set[int], int]]
) -> None:
    """Checks sharing limits, sent as one CHECK_MANY, get the replies of the mirror run in order."""
    script = sync_redis.register_script(lua.CHECK_MANY)
    prefix = f"test:{uuid.uuid4().hex}"
    states = {i: LimitState() for i in range(len(specs))}
    heads: list[int] = [len(checks)]
    keys: list[str] = []
    args: list[str | int] = []
    expected: list[list[int]] = []
    now = T0
    for n, (which, gap) in enumerate(checks):
        now += gap
        mine = sorted(i for i in which if i < len(specs)) or [0]
        ckeys: list[str] = []
        for i in mine:
            ckeys.append(f"{prefix}:s{i}")
            if specs[i].concurrency:
                ckeys.append(f"{prefix}:l{i}")
        cargs: list[str | int] = [now, f"L{n}", 300_000, len(mine)]
        cargs += [v for i in mine for v in specs[i].argv()]
        heads += [len(ckeys), len(cargs)]
        keys += ckeys
        args += cargs
        d = decide([specs[i] for i in mine], [states[i] for i in mine], now,
                   lease_id=f"L{n}", lease_ttl_us=300_000)  # fmt: skip
        expected.append(d.as_reply())
        for i, state in zip(mine, d.states, strict=True):
            states[i] = state
    replies = script(keys=keys, args=[*heads, *args])
    assert [[int(v) for v in reply] for reply in replies] == expected
    sync_redis.delete(*{k for k in keys})


def _compiled(fields: LimitFields) -> Compiled:
    client = f"c-{uuid.uuid4().hex[:8]}"
    rule = PolicyRule(f"p-{uuid.uuid4().hex[:6]}", client, None, False, fields)
    applied: list[Applied] = list(
        Resolver(Snapshot(policies=(rule,)), None).applicable(client, "s")
    )
    return Compiled.of(applied, time.time_ns() // 1000)


async def test_concurrent_checks_share_one_script_call(redis_url: str) -> None:
    """Checks issued in one loop turn go as one script call; each gets its own exact verdict."""
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=1.0)
    limiter = Limiter(client)
    sent: list[int] = []
    many = limiter._check_many

    async def counting(*, keys: list[str], args: list[str | int]) -> object:
        sent.append(int(args[0]))
        return await many(keys=keys, args=args)

    limiter._check_many = counting  # type: ignore[assignment]
    burst = _compiled(LimitFields(rate=0.001, burst=5))
    capped = _compiled(LimitFields(rate=1000, burst=1000, concurrency=3))
    verdicts = await asyncio.gather(*(limiter.check(burst) for _ in range(8)))
    leases = await asyncio.gather(*(limiter.check(capped) for _ in range(4)))
    assert sent == [8, 4]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 3
    assert [v.numbers[0].rate_remaining for v in verdicts[:5]] == [4, 3, 2, 1, 0]
    assert all(v.mode == "redis" for v in verdicts)
    assert [v.allowed for v in leases] == [True, True, True, False]
    await limiter.release(leases[0])
    again = await limiter.check(capped)  # alone in its turn: the one-check script
    assert again.allowed and sent == [8, 4]
    await client.aclose()


async def test_a_cancelled_caller_leaves_the_others_their_answers(redis_url: str) -> None:
    """Cancelling one waiting check does not cancel or change the others in its batch."""
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=1.0)
    limiter = Limiter(client)
    compiled = _compiled(LimitFields(rate=0.001, burst=3))
    tasks = [asyncio.create_task(limiter.check(compiled)) for _ in range(3)]
    await asyncio.sleep(0)  # all three queued in one turn
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert all(not isinstance(v, BaseException) and v.allowed for v in (done[0], done[2]))
    await client.aclose()


async def test_batch_on_a_dead_redis_falls_back_for_every_caller() -> None:
    """Redis refusing connections: every check of the batch is decided locally at once."""
    from aimp_core.net import free_port

    client = redis.asyncio.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2, socket_connect_timeout=0.2
    )
    limiter = Limiter(client)
    compiled = _compiled(LimitFields(rate=10, burst=4, on_redis_down="open"))
    verdicts = await asyncio.gather(*(limiter.check(compiled) for _ in range(6)))
    assert {v.mode for v in verdicts} == {"local"} and not limiter.available
    assert sum(v.allowed for v in verdicts) == 4
    await client.aclose()
