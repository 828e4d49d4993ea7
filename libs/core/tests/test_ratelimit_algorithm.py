"""Property tests of the multi-limit decision (the pure mirror of the Lua script)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from itertools import accumulate

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aimp_core.ratelimit.algorithm import LimitState, decide, release, warm_cost
from aimp_core.ratelimit.calendar import (
    US_PER_S,
    day_end_us,
    day_index,
    month_end_us,
    month_index,
    month_length_s,
)
from aimp_core.ratelimit.limits import Kind, LimitSpec

T0 = 1_700_000_000_000_000  # 2023-11-14, mid-day UTC
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

rate_specs = st.builds(
    LimitSpec,
    interval_us=st.integers(min_value=1, max_value=2_000_000),
    burst=st.integers(min_value=1, max_value=25),
)
gap_fractions = st.lists(st.fractions(min_value=0, max_value=3), min_size=1, max_size=80)


def arrivals(spec: LimitSpec, gaps: list[Fraction], start: int = T0) -> list[int]:
    return list(accumulate((int(g * spec.interval_us) for g in gaps), initial=start))[1:]


def run(specs: list[LimitSpec], times: list[int]) -> list[bool]:
    """Admit-or-refuse for each arrival, carrying the states along."""
    states = [LimitState() for _ in specs]
    out = []
    for now in times:
        d = decide(specs, states, now)
        states = list(d.states)
        out.append(d.allowed)
    return out


def fits_token_bucket(admitted: list[int], now: int, spec: LimitSpec) -> bool:
    """Reference token bucket (capacity burst, one token per interval): does one more fit?"""
    for s in [*admitted, now]:
        in_window = sum(1 for a in admitted if s <= a <= now)
        if (in_window + 1 - spec.burst) * spec.interval_us > now - s:
            return False
    return True


def max_in_any_window(admitted: list[int], rate: Fraction, burst: int) -> bool:
    """True when every window [a_i, a_j] holds at most rate * (a_j - a_i) + burst calls."""
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            if j - i + 1 > rate * Fraction(admitted[j] - first, US_PER_S) + burst:
                return False
    return True


@given(st.integers(min_value=-(6 * 10**16), max_value=2 * 10**17))
@example(0)
@example(951_782_400 * US_PER_S - 1)  # the last microsecond of 2000-02-29
def test_calendar_matches_datetime(now_us: int) -> None:
    """Day and month indexes and period ends agree with Python's own UTC calendar."""
    moment = EPOCH + timedelta(microseconds=now_us)
    assert day_index(now_us) == (moment.date() - EPOCH.date()).days
    assert month_index(now_us) == moment.year * 12 + moment.month - 1
    next_day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)
    assert day_end_us(now_us) == (next_day - EPOCH) // timedelta(microseconds=1)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    next_month = datetime(year, month, 1, tzinfo=UTC)
    assert month_end_us(now_us) == (next_month - EPOCH) // timedelta(microseconds=1)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    assert month_length_s(now_us) == (next_month - start) // timedelta(seconds=1)


@settings(max_examples=200, deadline=None)
@given(spec=rate_specs, gaps=gap_fractions)
def test_rate_admits_exactly_what_a_token_bucket_admits(
    spec: LimitSpec, gaps: list[Fraction]
) -> None:
    """Without warm-up, a call is admitted if and only if it fits the reference token bucket."""
    times = arrivals(spec, gaps)
    admitted: list[int] = []
    for now, allowed in zip(times, run([spec], times), strict=True):
        assert allowed == fits_token_bucket(admitted, now, spec)
        if allowed:
            admitted.append(now)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(min_value=0.01, max_value=100_000, allow_nan=False),
    burst=st.integers(min_value=1, max_value=25),
    warmup_intervals=st.integers(min_value=0, max_value=40),
    cold=st.floats(min_value=1.0, max_value=10.0),
    epoch_offset=st.integers(min_value=-5, max_value=60),
    gaps=gap_fractions,
)
@example(rate=1 / 3, burst=1, warmup_intervals=0, cold=3.0, epoch_offset=0, gaps=[0, 1])
def test_never_more_than_rate_times_window_plus_burst(
    rate: float,
    burst: int,
    warmup_intervals: int,
    cold: float,
    epoch_offset: int,
    gaps: list[Fraction],
) -> None:
    """With or without a warm-up ramp, any window of length t holds at most rate*t + burst calls."""
    base = LimitSpec.of(rate, burst)
    spec = LimitSpec.of(
        rate,
        burst,
        warmup_s=warmup_intervals * base.interval_us / US_PER_S,
        cold_factor=cold,
        warm_epoch_s=(T0 + epoch_offset * base.interval_us) / US_PER_S,
    )
    times = arrivals(spec, gaps)
    admitted = [t for t, ok in zip(times, run([spec], times), strict=True) if ok]
    assert max_in_any_window(admitted, Fraction(rate), burst)


@settings(max_examples=200, deadline=None)
@given(spec=rate_specs, gaps=gap_fractions)
def test_retry_after_is_exact(spec: LimitSpec, gaps: list[Fraction]) -> None:
    """A refused call would fit exactly retry_after later, and not a microsecond sooner."""
    state = LimitState()
    for now in arrivals(spec, gaps):
        d = decide([spec], [state], now)
        if d.allowed:
            state = d.states[0]
            assert 0 <= d.numbers[0].rate_remaining < spec.burst
            continue
        assert d.kind is Kind.RATE and d.retry_after_us > 0
        assert decide([spec], [state], now + d.retry_after_us).allowed
        assert not decide([spec], [state], now + d.retry_after_us - 1).allowed


def test_cold_limit_ramps_up_to_full_rate() -> None:
    """A cold limit with warm-up admits a third of the rate at first and the full rate later."""
    spec = LimitSpec.of(100, 1, warmup_s=10, cold_factor=3)
    assert warm_cost(spec, T0, T0) == 3 * spec.interval_us
    assert warm_cost(spec, T0, T0 + 5 * US_PER_S) == 2 * spec.interval_us
    assert warm_cost(spec, T0, T0 + 10 * US_PER_S) == spec.interval_us
    # Saturating load: one arrival per millisecond for 12 s.
    times = [T0 + i * 1000 for i in range(12_000)]
    allowed = run([spec], times)
    first_second = sum(allowed[:1000])
    last_second = sum(allowed[11_000:])
    assert 33 <= first_second <= 35  # ~100/3 calls per second while cold
    assert 99 <= last_second <= 101  # the full rate once warm
    # Idle for longer than the ramp: cold again.
    states = [LimitState()]
    for now in times:
        states = list(decide([spec], states, now).states)
    later = T0 + 30 * US_PER_S
    assert sum(run([spec], [later + i * 1000 for i in range(1000)])) <= 35


@settings(max_examples=150, deadline=None)
@given(
    quota=st.integers(min_value=1, max_value=60),
    gaps_ms=st.lists(st.integers(min_value=0, max_value=4_000_000), min_size=1, max_size=120),
)
def test_daily_quota_admits_exactly_n_per_utc_day(quota: int, gaps_ms: list[int]) -> None:
    """A quota of N calls a day admits exactly min(N, calls that day) in each UTC day."""
    spec = LimitSpec.of(1_000_000, 1_000_000, quota_day=quota)
    times = list(accumulate((g * 1000 for g in gaps_ms), initial=T0))[1:]
    per_day: dict[int, list[bool]] = {}
    for now, ok in zip(times, run([spec], times), strict=True):
        per_day.setdefault(day_index(now), []).append(ok)
    for outcomes in per_day.values():
        assert sum(outcomes) == min(quota, len(outcomes))
        assert outcomes == sorted(outcomes, reverse=True)  # the first N, then refusals


def test_month_quota_resets_on_the_first_and_says_when() -> None:
    """A monthly quota refuses with a retry hint reaching the next month's first microsecond."""
    spec = LimitSpec.of(1000, 1000, quota_month=2)
    end = month_end_us(T0)
    d1 = decide([spec], [LimitState()], T0)
    d2 = decide([spec], d1.states, T0 + 1)
    d3 = decide([spec], d2.states, T0 + 2)
    assert (d1.allowed, d2.allowed, d3.allowed) == (True, True, False)
    assert d3.kind is Kind.MONTH and d3.retry_after_us == end - (T0 + 2)
    assert decide([spec], d3.states, end).allowed


limits_strategy = st.builds(
    LimitSpec,
    interval_us=st.sampled_from([0, 1000, 50_000, 1_000_000]),
    burst=st.integers(min_value=1, max_value=4),
    quota_day=st.integers(min_value=0, max_value=4),
    quota_month=st.integers(min_value=0, max_value=6),
    concurrency=st.integers(min_value=0, max_value=3),
)


@settings(max_examples=200, deadline=None)
@given(
    specs=st.lists(limits_strategy, min_size=1, max_size=4),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=400_000), st.booleans()),
        min_size=1,
        max_size=40,
    ),
)
def test_all_or_nothing(specs: list[LimitSpec], steps: list[tuple[int, bool]]) -> None:
    """A call is admitted iff every limit alone admits it; a refused call consumes nothing."""
    states = [LimitState() for _ in specs]
    now = T0
    held: list[str] = []
    for i, (gap, end_one) in enumerate(steps):
        now += gap
        if end_one and held:
            lease = held.pop(0)
            states = [release(s, lease) for s in states]
        d = decide(specs, states, now, lease_id=f"L{i}", lease_ttl_us=2_000_000)
        alone = [decide([s], [st_], now).allowed for s, st_ in zip(specs, states, strict=True)]
        assert d.allowed == all(alone)
        if d.allowed:
            held.append(f"L{i}")
        else:
            assert not alone[d.failed]
            for before, after in zip(states, d.states, strict=True):
                live = {k: v for k, v in before.leases.items() if v > now}
                assert (after.tat_us, after.day_count, after.month_count) == (
                    before.tat_us,
                    before.day_count,
                    before.month_count,
                )
                assert dict(after.leases) in (dict(before.leases), live)
        states = list(d.states)
        for spec, state in zip(specs, states, strict=True):
            if spec.concurrency:
                assert sum(1 for v in state.leases.values() if v > now) <= spec.concurrency


def test_concurrency_leases_free_on_release_and_on_expiry() -> None:
    """Two calls in flight fill a cap of 2; a release or an expired lease frees a slot."""
    spec = LimitSpec.of(1000, 1000, concurrency=2)
    ttl = 5 * US_PER_S
    a = decide([spec], [LimitState()], T0, lease_id="a", lease_ttl_us=ttl)
    b = decide([spec], a.states, T0 + 1, lease_id="b", lease_ttl_us=ttl)
    c = decide([spec], b.states, T0 + 2, lease_id="c", lease_ttl_us=ttl)
    assert (a.allowed, b.allowed, c.allowed) == (True, True, False)
    assert c.kind is Kind.CONCURRENCY and c.numbers[0].concurrency_remaining == 0
    freed = decide([spec], [release(b.states[0], "a")], T0 + 3, lease_id="d", lease_ttl_us=ttl)
    assert freed.allowed
    expired = decide([spec], b.states, T0 + ttl, lease_id="e", lease_ttl_us=ttl)
    assert expired.allowed and set(expired.states[0].leases) == {"b", "e"}


@pytest.mark.parametrize("members", [1, 2, 3, 4])
def test_scaled_share_never_exceeds_the_whole(members: int) -> None:
    """Each of N members' local shares admits at most rate/N; together at most the whole limit."""
    spec = LimitSpec.of(100, 10, quota_day=5, concurrency=7)
    share = spec.scaled(members)
    assert share.interval_us == spec.interval_us * members
    assert share.quota_day == 0
    assert share.concurrency * members < spec.concurrency + members
    times = [T0 + i * 1000 for i in range(5000)]  # 5 s of saturating arrivals
    admitted = sum(run([share], times))
    assert admitted <= (100 * 5) / members + share.burst


def test_spec_validation() -> None:
    """Out-of-range rates, bursts and cold factors are refused with the allowed range."""
    with pytest.raises(ValueError, match="rate must be"):
        LimitSpec.of(0.0001, 1)
    with pytest.raises(ValueError, match="burst must be"):
        LimitSpec.of(1, 0)
    with pytest.raises(ValueError, match="cold_factor"):
        LimitSpec.of(1, 1, cold_factor=0.5)
    assert LimitSpec.of(3, 1).interval_us == 333_334
    assert LimitSpec.of(1000, 200) == LimitSpec(interval_us=1000, burst=200)


def test_loosening_a_limit_takes_effect_at_once() -> None:
    """After 1 call per 1000 s becomes 10/s, the client waits one new interval, not 1000 s."""
    tight, loose = LimitSpec.of(0.001, 1), LimitSpec.of(10, 5)
    used = decide([tight], [LimitState()], T0)
    assert used.allowed and not decide([tight], used.states, T0 + 1).allowed
    refused = decide([loose], used.states, T0 + 1)
    assert not refused.allowed and refused.retry_after_us == loose.interval_us
    assert decide([loose], refused.states, T0 + 1 + loose.interval_us).allowed
