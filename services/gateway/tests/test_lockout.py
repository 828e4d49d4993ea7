"""Sign-in lockout: the pure decision (hypothesis, fake clock) and its Redis state."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from aimp_core.net import free_port
from aimp_gateway.lockout import (
    Attempts,
    LockoutPolicy,
    Verdict,
    after_failure,
    decide,
    delay_after,
)
from aimp_gateway.login_guard import LoginGuard

from .gateways import Clock

POLICY = LockoutPolicy(max_failures=5, window_s=300, lock_s=900, base_delay_s=1, max_delay_s=30)

#: Gaps between attempts, in seconds (0 to 20 minutes).
gaps = st.lists(st.floats(min_value=0, max_value=1200, allow_nan=False), max_size=40)


def _replay(gap_list: list[float]) -> tuple[Attempts, float]:
    """Fail at every attempt the decision allows, advancing a fake clock by the gaps."""
    attempts, now = Attempts(), 1_000_000.0
    for gap in gap_list:
        now += gap
        if decide(attempts, now, POLICY).allowed:
            attempts = after_failure(attempts, now, POLICY)
    return attempts, now


@given(gaps)
def test_never_more_than_max_failures_inside_a_window(gap_list: list[float]) -> None:
    """However attempts are spaced, no window holds more checked failures than the maximum."""
    now, checked, attempts = 1_000_000.0, [], Attempts()
    for gap in gap_list:
        now += gap
        if decide(attempts, now, POLICY).allowed:
            checked.append(now)
            attempts = after_failure(attempts, now, POLICY)
    for i, start in enumerate(checked):
        inside = [t for t in checked[i:] if t - start < POLICY.window_s]
        assert len(inside) <= POLICY.max_failures


@given(gaps, st.floats(min_value=0, max_value=2000, allow_nan=False))
def test_a_refusal_says_how_long_and_is_over_after_that(
    gap_list: list[float], probe: float
) -> None:
    """A refused attempt carries a positive Retry-After, and trying after it is allowed."""
    attempts, now = _replay(gap_list)
    decision = decide(attempts, now + probe, POLICY)
    if decision.allowed:
        assert decision.retry_after_s == 0
        return
    assert decision.retry_after_s > 0
    assert decide(attempts, now + probe + decision.retry_after_s + 1e-6, POLICY).allowed


@given(st.integers(min_value=0, max_value=60))
def test_delays_grow_and_are_bounded(failures: int) -> None:
    """The wait after failures never shrinks as failures add up and never passes the max."""
    assert delay_after(failures, POLICY) <= delay_after(failures + 1, POLICY)
    assert 0 <= delay_after(failures, POLICY) <= POLICY.max_delay_s


def test_fifth_failure_locks_for_the_lock_time() -> None:
    """Five failures inside five minutes lock the name for fifteen minutes, with Retry-After."""
    attempts, now = Attempts(), 0.0
    for _ in range(5):
        decision = decide(attempts, now, POLICY)
        now += decision.retry_after_s  # a patient attacker waits out each delay
        assert decide(attempts, now, POLICY).allowed
        attempts = after_failure(attempts, now, POLICY)
    locked = decide(attempts, now + 1, POLICY)
    assert locked.verdict is Verdict.LOCKED and locked.retry_after_s == pytest.approx(899)
    assert decide(attempts, now + 900, POLICY).allowed


def test_first_failure_is_free_then_delays_double() -> None:
    """A single typo costs nothing; the second failure makes the next try wait 1 s, then 2 s."""
    one = after_failure(Attempts(), 10.0, POLICY)
    assert decide(one, 10.0, POLICY).allowed
    two = after_failure(one, 10.0, POLICY)
    assert decide(two, 10.5, POLICY).verdict is Verdict.SLOW_DOWN
    assert decide(two, 11.0, POLICY).allowed
    three = after_failure(two, 11.0, POLICY)
    assert decide(three, 12.5, POLICY).retry_after_s == pytest.approx(0.5)


def test_failures_age_out_of_the_window() -> None:
    """Failures older than the window no longer count toward delay or lock."""
    attempts = Attempts((0.0, 1.0, 2.0, 3.0), None)
    assert decide(attempts, 4.0, POLICY).verdict is Verdict.SLOW_DOWN
    assert decide(attempts, 304.0, POLICY).allowed
    assert after_failure(attempts, 400.0, POLICY).failures == (400.0,)


# -- the Redis state, shared by gateways -----------------------------------------------


def test_two_gateways_share_the_lock_and_success_resets(sync_redis: redis.Redis) -> None:
    """Failures recorded by two guards on one Redis add up to one lock; a success clears it."""
    clock = Clock()
    a, b = LoginGuard(sync_redis, POLICY, clock=clock), LoginGuard(sync_redis, POLICY, clock=clock)
    name = f"user-{uuid.uuid4().hex[:8]}"
    for i in range(POLICY.max_failures):
        guard = a if i % 2 == 0 else b
        decision = guard.check("user", name)
        clock.now += decision.retry_after_s
        assert guard.check("user", name).allowed
        guard.failed("user", name)
    locked = b.check("user", name)
    assert locked.verdict is Verdict.LOCKED and 899 <= locked.retry_after_s <= 900
    assert a.check("client", name).allowed  # clients and users are counted apart
    a.succeeded("user", name)
    assert b.check("user", name).allowed


def test_redis_down_lets_sign_ins_through() -> None:
    """With Redis unreachable the guard allows attempts (Argon2 still checks the secret)."""
    dead = redis.Redis(
        host="127.0.0.1",
        port=free_port(),
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), 0),  # as the gateway's own client: fail fast
    )
    guard = LoginGuard(dead, POLICY)
    guard.failed("user", "x")
    assert guard.check("user", "x").allowed
