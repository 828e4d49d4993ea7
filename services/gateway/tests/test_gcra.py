"""GCRA: exactly a token bucket, never above rate*t + burst, exact retry hints."""

from __future__ import annotations

from fractions import Fraction
from itertools import accumulate

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aimp_gateway.gcra import (
    Decision,
    Limit,
    decide,
    policy_header,
    ratelimit_header,
)

limits = st.builds(
    Limit,
    interval_us=st.integers(min_value=1, max_value=2_000_000),
    burst=st.integers(min_value=1, max_value=25),
)
# Gaps between arrivals as fractions of the interval, so bursts and idle spells both occur.
gap_fractions = st.lists(st.fractions(min_value=0, max_value=3), min_size=1, max_size=80)


def _arrivals(limit: Limit, gaps: list[Fraction]) -> list[int]:
    start = 1_700_000_000_000_000
    return list(accumulate((int(g * limit.interval_us) for g in gaps), initial=start))[1:]


def _run(limit: Limit, times: list[int]) -> list[Decision]:
    tat: int | None = None
    out = []
    for now in times:
        d = decide(tat, now, limit)
        if d.allowed:
            tat = d.tat_us
        out.append(d)
    return out


def _fits(admitted: list[int], now: int, limit: Limit) -> bool:
    """Reference token bucket (capacity burst, one token per interval): does one more fit?"""
    for s in [*admitted, now]:
        in_window = sum(1 for a in admitted if s <= a <= now)
        if (in_window + 1 - limit.burst) * limit.interval_us > now - s:
            return False
    return True


@settings(max_examples=200, deadline=None)
@given(limit=limits, gaps=gap_fractions)
def test_gcra_admits_exactly_what_a_token_bucket_admits(limit: Limit, gaps: list[Fraction]) -> None:
    """Every call that fits the bucket is admitted and every call that does not is refused."""
    admitted: list[int] = []
    for now, decision in zip(times := _arrivals(limit, gaps), _run(limit, times), strict=True):
        assert decision.allowed == _fits(admitted, now, limit)
        if decision.allowed:
            admitted.append(now)


@settings(max_examples=200, deadline=None)
@example(rate=1 / 3, burst=1, gaps=[Fraction(0), Fraction(1)])
@given(
    rate=st.floats(min_value=0.01, max_value=100_000, allow_nan=False),
    burst=st.integers(min_value=1, max_value=25),
    gaps=gap_fractions,
)
def test_never_more_than_rate_times_window_plus_burst(
    rate: float, burst: int, gaps: list[Fraction]
) -> None:
    """Over any window of length t, at most rate * t + burst calls are admitted."""
    limit = Limit.per_second(rate, burst)
    times = _arrivals(limit, gaps)
    admitted = [t for t, d in zip(times, _run(limit, times), strict=True) if d.allowed]
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            window_s = Fraction(admitted[j] - first, 1_000_000)
            assert j - i + 1 <= Fraction(rate) * window_s + burst


@settings(max_examples=200, deadline=None)
@given(limit=limits, gaps=gap_fractions)
def test_retry_after_is_exact(limit: Limit, gaps: list[Fraction]) -> None:
    """A refused call would be admitted exactly retry_after later, and not a microsecond sooner."""
    tat: int | None = None
    for now in _arrivals(limit, gaps):
        d = decide(tat, now, limit)
        if d.allowed:
            tat = d.tat_us
            assert 0 <= d.remaining < limit.burst
            continue
        assert d.retry_after_us > 0 and d.remaining == 0
        assert decide(tat, now + d.retry_after_us, limit).allowed
        assert not decide(tat, now + d.retry_after_us - 1, limit).allowed


@given(limit=limits)
def test_full_burst_at_once_then_refused(limit: Limit) -> None:
    """An idle client may send exactly `burst` calls at one instant; the next waits one interval."""
    decisions = _run(limit, [5_000_000_000] * (limit.burst + 1))
    assert all(d.allowed for d in decisions[:-1])
    assert [d.remaining for d in decisions[:-1]] == list(range(limit.burst - 1, -1, -1))
    assert not decisions[-1].allowed
    assert decisions[-1].retry_after_us == limit.interval_us


def test_per_second_rounds_interval_up() -> None:
    """The emission interval is rounded up, so the effective rate never exceeds the setting."""
    assert Limit.per_second(3, 1).interval_us == 333_334
    assert Limit.per_second(1000, 200) == Limit(interval_us=1000, burst=200)
    with pytest.raises(ValueError):
        Limit.per_second(0, 1)
    with pytest.raises(ValueError):
        Limit.per_second(1, 0)


def test_ratelimit_headers_name_the_limit() -> None:
    """RateLimit-Policy states the quota per window and burst; RateLimit the wait."""
    assert policy_header(Limit.per_second(1000, 200)) == '"client-rate";q=1000;w=1;burst=200'
    assert policy_header(Limit.per_second(0.5, 3)) == '"client-rate";q=1;w=2;burst=3'
    refused = Decision(False, 0, 0, retry_after_us=1_500_000, reset_after_us=2_000_000)
    assert ratelimit_header(refused) == '"client-rate";r=0;t=2'
