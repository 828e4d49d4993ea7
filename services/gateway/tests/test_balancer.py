"""Balancer algorithms: load counters, peak EWMA, smooth weighted round robin, P2C (pure)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.registry_client import META_WEIGHT, Instance
from aimp_gateway.balancer import (
    DEFAULT_DECAY_S,
    UNMEASURED_PENALTY,
    InstanceLoad,
    SmoothWeighted,
    parse_weight,
    power_of_two,
    weight_of,
    weighted_draw,
)


def _inst(n: int, **meta: str) -> Instance:
    return Instance(f"iris-{n}", "IRIS", "127.0.0.1", 20000 + n, "UP", dict(meta))


@given(st.lists(st.booleans(), max_size=200))
def test_load_counter_never_negative_and_balances(ops: list[bool]) -> None:
    """Any mix of begins and ends (extra ends included) keeps the count >= 0 and exact."""
    load = InstanceLoad()
    expected = 0
    for begin in ops:
        if begin:
            load.begin()
            expected += 1
        else:
            assert load.end() is (expected > 0)
            expected = max(expected - 1, 0)
        assert load.outstanding == expected >= 0
    for _ in range(expected):
        load.end()
    assert load.outstanding == 0


def test_peak_ewma_jumps_up_and_decays_down() -> None:
    """A slow sample replaces the estimate at once; fast ones and idle time bring it down."""
    load = InstanceLoad()
    assert load.latency_s(0.0, 10.0) is None
    load.observe(0.010, now=0.0, decay_s=10.0)
    load.observe(0.500, now=0.1, decay_s=10.0)
    assert load.latency_s(0.1, 10.0) == pytest.approx(0.5)
    load.observe(0.010, now=10.1, decay_s=10.0)  # one decay time later
    after = load.latency_s(10.1, 10.0)
    assert after is not None and 0.010 < after < 0.5 * 0.37 + 0.010
    idle = load.latency_s(60.0, 10.0)
    assert idle is not None and idle < after / 100


def test_errors_never_lower_the_estimate() -> None:
    """A fast error keeps the estimate where it was instead of making the pod look fast."""
    load = InstanceLoad()
    load.observe(0.2, now=0.0, decay_s=10.0)
    load.observe(0.001, now=0.0, decay_s=10.0, error=True)
    assert load.latency_s(0.0, 10.0) == pytest.approx(0.2)


def test_unmeasured_instance_is_tried_first_but_not_piled_on() -> None:
    """No sample: score 0 while idle (optimistic), a huge penalty once a call is in flight."""
    fresh, measured = InstanceLoad(), InstanceLoad()
    measured.observe(0.05, now=0.0, decay_s=10.0)
    assert fresh.score(0.0, 10.0) == 0.0 < measured.score(0.0, 10.0)
    fresh.begin()
    assert fresh.score(0.0, 10.0) >= UNMEASURED_PENALTY > measured.score(0.0, 10.0)


def test_score_grows_with_outstanding() -> None:
    """Score = (outstanding + 1) x latency: two calls in flight triple the idle score."""
    load = InstanceLoad()
    load.observe(0.1, now=0.0, decay_s=10.0)
    idle = load.score(0.0, 10.0)
    load.begin()
    load.begin()
    assert load.score(0.0, 10.0) == pytest.approx(3 * idle)


weights_st = st.lists(st.integers(1, 12), min_size=1, max_size=8)


@given(weights=weights_st, rounds=st.integers(1, 5))
def test_smooth_weighted_gives_each_exactly_its_weight(weights: list[int], rounds: int) -> None:
    """Over N x sum(weights) picks each instance is picked exactly weight x N times."""
    wrr = SmoothWeighted()
    keys = tuple(range(len(weights)))
    picks = Counter(wrr.choose("g", keys, weights) for _ in range(rounds * sum(weights)))
    assert [picks[i] for i in keys] == [w * rounds for w in weights]


def test_smooth_weighted_interleaves() -> None:
    """Weights 5,1,1 give a a,a,b,a,c,a,a pattern (nginx), not five a's in a row."""
    wrr = SmoothWeighted()
    keys = ("a", "b", "c")
    order = "".join(keys[wrr.choose("g", keys, (5, 1, 1))] for _ in range(7))
    assert order == "aabacaa"


def test_smooth_weighted_restarts_when_members_change_and_prunes() -> None:
    """A group with new members starts over; retained groups keep their state, others go."""
    wrr = SmoothWeighted()
    wrr.choose("g", ("a", "b"), (1, 1))
    assert wrr.choose("g", ("a", "c"), (1, 1)) == 0  # new members: fresh start
    wrr.choose("h", ("x",), (1,))
    wrr.retain({"h"})
    assert wrr.choose("g", ("a", "c"), (1, 1)) == 0


@given(
    n=st.integers(1, 10),
    seed=st.integers(0, 2**32),
    outstanding=st.lists(st.integers(0, 5), min_size=10, max_size=10),
)
def test_power_of_two_picks_a_member_and_never_the_worse_of_two(
    n: int, seed: int, outstanding: list[int]
) -> None:
    """P2C returns a valid index whose score is no worse than the other draw's."""
    rng = random.Random(seed)
    loads = []
    for k in range(n):
        load = InstanceLoad()
        load.observe(0.01 * (k + 1), now=0.0, decay_s=10.0)
        load.outstanding = outstanding[k]
        loads.append(load)
    draws: list[float] = []

    def rand() -> float:
        draws.append(rng.random())
        return draws[-1]

    idx = power_of_two(loads, 0.0, 10.0, rand)
    assert 0 <= idx < n
    if n > 1:
        i = int(draws[0] * n)
        j = int(draws[1] * (n - 1))
        j += j >= i
        assert {idx} <= {i, j}
        other = j if idx == i else i
        assert loads[idx].score(0.0, 10.0) <= loads[other].score(0.0, 10.0)


@given(seed=st.integers(0, 2**32))
def test_power_of_two_sends_a_slow_instance_fewer_calls(seed: int) -> None:
    """With one of four instances 20x slower, P2C sends it far less than a quarter of calls."""
    rng = random.Random(seed)
    latency = [0.2, 0.01, 0.01, 0.01]
    loads = [InstanceLoad() for _ in latency]
    now = 0.0
    picks = Counter[int]()
    for _ in range(400):
        idx = power_of_two(loads, now, DEFAULT_DECAY_S, rng.random)
        picks[idx] += 1
        loads[idx].begin()
        now += 0.005
        loads[idx].end()
        loads[idx].observe(latency[idx], now, DEFAULT_DECAY_S)
    assert picks[0] < 400 / 4 / 4
    assert sum(picks.values()) == 400


def test_weight_metadata_defaults_and_bad_values() -> None:
    """aimp.weight is used when it is an integer 1..10000; absent or bad means 1."""
    assert weight_of(_inst(1)) == 1
    assert weight_of(_inst(2, **{META_WEIGHT: "7"})) == 7
    for bad in ("0", "-3", "2.5", "heavy", "100001"):
        assert weight_of(_inst(3, **{META_WEIGHT: bad})) == 1
    assert parse_weight(None) is None
    with pytest.raises(ValueError, match="between 1 and"):
        parse_weight("0")


def test_bad_weight_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """The same bad weight on the same instance is logged once however often it is read."""
    inst = _inst(9, **{META_WEIGHT: "lots"})
    with caplog.at_level("WARNING"):
        for _ in range(5):
            weight_of(inst)
    assert sum("lots" in r.getMessage() for r in caplog.records) == 1


@given(weights=weights_st, seed=st.integers(0, 2**32))
def test_weighted_draw_returns_an_index_with_weight(weights: list[int], seed: int) -> None:
    """A weighted draw always lands on a valid index, including at the top of the range."""
    idx = weighted_draw(weights, random.Random(seed).random())
    assert 0 <= idx < len(weights)
    assert weighted_draw(weights, 0.0) == 0
    assert weighted_draw(weights, 0.999999999) == len(weights) - 1


def test_smooth_weighted_keeps_rotating_across_equal_rebuilt_members() -> None:
    """A rebuilt table with the same members (a new, equal tuple) continues the rotation."""
    wrr = SmoothWeighted()
    first = wrr.choose("g", ("a", "b"), (1, 1))
    assert wrr.choose("g", tuple(["a", "b"]), (1, 1)) != first
