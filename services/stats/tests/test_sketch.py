"""Property tests of the latency sketch: merge algebra, stated error, serialization."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimp_stats.domain import percentile
from aimp_stats.sketch import ALPHA, MAX_MS, MIN_MS, LatencySketch, bucket_key, bucket_value

#: Float slack on top of ALPHA: log() at a bucket edge may round into the next bucket.
SLACK = 1e-9

latency = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
latencies = st.lists(latency, min_size=1, max_size=400)
percents = st.sampled_from([0, 1, 25, 50, 90, 95, 99, 99.9, 100]) | st.floats(0, 100)


def within_error(estimate: float, exact: float) -> bool:
    if exact <= MIN_MS:
        return estimate == 0.0
    return abs(estimate - exact) <= (ALPHA + SLACK) * exact


@given(values=latencies, percent=percents)
def test_quantile_is_within_the_stated_relative_error(values: list[float], percent: float) -> None:
    """Every quantile is within ALPHA of the exact nearest-rank percentile of the data."""
    exact = percentile(sorted(values), percent)
    estimate = LatencySketch.of(values).quantile(percent)
    assert exact is not None and estimate is not None
    assert within_error(estimate, exact), (estimate, exact)


@given(a=latencies, b=latencies, c=latencies)
def test_merge_is_associative_commutative_and_equals_the_union(
    a: list[float], b: list[float], c: list[float]
) -> None:
    """(a+b)+c == a+(b+c) == c+b+a == the sketch of all values together."""
    sa, sb, sc = (LatencySketch.of(v) for v in (a, b, c))
    left = LatencySketch()
    for s in (sa, sb):
        left.merge(s)
    left.merge(sc)
    bc = LatencySketch()
    bc.merge(sb)
    bc.merge(sc)
    right = LatencySketch()
    right.merge(sa)
    right.merge(bc)
    reverse = LatencySketch()
    for s in (sc, sb, sa):
        reverse.merge(s)
    union = LatencySketch.of([*a, *b, *c])
    assert left == right == reverse == union
    assert union.count == len(a) + len(b) + len(c)


@settings(max_examples=50)
@given(values=st.lists(latency, max_size=200))
def test_bytes_round_trip(values: list[float]) -> None:
    """A sketch read back from its bytes equals the original, empty or not."""
    sketch = LatencySketch.of(values)
    assert LatencySketch.from_bytes(sketch.to_bytes()) == sketch


@given(value=st.floats(min_value=MIN_MS * 1.000001, max_value=MAX_MS / 1.03))
def test_bucket_value_is_within_alpha_of_any_member(value: float) -> None:
    """The value reported for a bucket is within ALPHA of each value that falls in it."""
    key = bucket_key(value)
    assert key is not None
    assert abs(bucket_value(key) - value) <= (ALPHA + SLACK) * value


def test_known_answers_and_edges() -> None:
    """Zeros report 0, huge values clamp, an empty sketch has no quantile."""
    assert LatencySketch().quantile(50) is None
    assert LatencySketch.of([0.0, 0.0, 5.0]).quantile(50) == 0.0
    assert LatencySketch.of([1e12]).quantile(99) == MAX_MS
    p99 = LatencySketch.of([float(i) for i in range(1, 101)]).quantile(99)
    assert p99 is not None and abs(p99 - 99) <= ALPHA * 99
    p50 = LatencySketch.of([float(i) for i in range(1, 101)]).quantile(50)
    assert p50 is not None and abs(p50 - 50) <= ALPHA * 50 and p50 != 99


def test_garbage_bytes_are_refused() -> None:
    """Bytes that are not a sketch raise ValueError instead of giving wrong counts."""
    blob = LatencySketch.of([1.0, 2.0]).to_bytes()
    with pytest.raises(ValueError, match="not a latency sketch"):
        LatencySketch.from_bytes(blob[:-3])
