"""Self-preservation: the renewal meter, the decision, Eureka's eviction cap, the sweeper."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimp_registry.documents import parse_registration
from aimp_registry.eviction import Evictor, PreservationConfig
from aimp_registry.preservation import (
    Expected,
    RenewalMeter,
    decide,
    eviction_limit,
    expected_renewals,
)
from aimp_registry.store import InMemoryRegistry

START = 1_700_000_000_000


def test_meter_counts_a_sliding_window() -> None:
    """Renewals older than the window stop counting, second by second."""
    meter = RenewalMeter(window_s=60)
    meter.record(START)
    meter.record(START + 500)
    meter.record(START + 30_000, amount=3)
    assert meter.count(START + 30_000) == 5
    assert meter.count(START + 59_999) == 5
    assert meter.count(START + 60_000) == 3  # the first second has left the window
    assert meter.count(START + 90_000) == 0


@settings(deadline=None)  # a loaded CI machine must not make it flaky
@given(st.lists(st.integers(min_value=0, max_value=300_000), max_size=200), st.integers(1, 120))
def test_meter_equals_a_brute_force_count(offsets: list[int], window_s: int) -> None:
    """The meter's count equals counting the renewals whose second is inside the window."""
    meter = RenewalMeter(window_s=window_s)
    times = sorted(START + o for o in offsets)
    for t in times:
        meter.record(t)
    now = (times[-1] if times else START) + 1
    expected = sum(1 for t in times if t // 1000 > now // 1000 - window_s)
    assert meter.count(now) == expected


def test_expected_counts_only_instances_registered_for_a_full_window() -> None:
    """A fresh instance, or one registered before the process started counting, waits."""
    now = START + 120_000
    leases = [
        (START, 30),  # two minutes old: 2 renewals a minute
        (START, 10),  # 6 a minute
        (now - 30_000, 30),  # too young
    ]
    got = expected_renewals(leases, now_ms=now, since_ms=START, window_s=60)
    assert got == Expected(renewals=8.0, mature_instances=2)
    restarted = expected_renewals(leases, now_ms=now, since_ms=now - 10_000, window_s=60)
    assert restarted == Expected(renewals=0.0, mature_instances=0)


@pytest.mark.parametrize(
    ("renewals", "active"),
    [(100, False), (85, False), (84, True), (0, True)],
)
def test_decide_at_the_threshold(renewals: int, active: bool) -> None:
    """Self-preservation is on exactly when renewals fall below 85 % of expected."""
    state = decide(enabled=True, ratio=0.85, expected=Expected(100.0, 50), renewals=renewals)
    assert state.active is active
    assert state.threshold == pytest.approx(85.0)


expected_values = st.builds(
    Expected, st.floats(min_value=0, max_value=1e6), st.integers(min_value=0, max_value=10_000)
)


@settings(deadline=None)  # a loaded CI machine must not make it flaky
@given(
    expected=expected_values,
    renewals=st.integers(min_value=0, max_value=2_000_000),
    more=st.integers(min_value=0, max_value=1000),
    ratio=st.floats(min_value=0.01, max_value=1.0),
    min_instances=st.integers(min_value=1, max_value=20),
)
def test_decide_properties(
    expected: Expected, renewals: int, more: int, ratio: float, min_instances: int
) -> None:
    """Disabled never engages; more renewals never engage it; all expected never engages."""
    kwargs: dict[str, Any] = {"ratio": ratio, "expected": expected, "min_instances": min_instances}
    on = decide(enabled=True, renewals=renewals, **kwargs)
    assert not decide(enabled=False, renewals=renewals, **kwargs).active
    if not on.active:
        assert not decide(enabled=True, renewals=renewals + more, **kwargs).active
    if renewals >= expected.renewals:
        assert not on.active
    if expected.mature_instances < min_instances:
        assert not on.active


@pytest.mark.parametrize(("size", "limit"), [(0, 0), (1, 1), (5, 1), (20, 3), (100, 15)])
def test_eviction_limit_is_eurekas(size: int, limit: int) -> None:
    """At most size - int(size x 0.85) instances go per sweep (at least one if any)."""
    assert eviction_limit(size, 0.85) == limit


@settings(deadline=None)  # a loaded CI machine must not make it flaky
@given(st.integers(min_value=1, max_value=100_000), st.floats(min_value=0.01, max_value=0.99))
def test_eviction_limit_bounds(size: int, ratio: float) -> None:
    """The cap lets at least one instance go and never more than the registry holds."""
    assert 1 <= eviction_limit(size, ratio) <= size


# -- the sweeper over a real store, fake clock -------------------------------------------


@pytest.fixture
def store(clock: Any) -> InMemoryRegistry:
    return InMemoryRegistry(clock)


def _register(store: InMemoryRegistry, clock: Any, make_body: Any, count: int) -> None:
    for i in range(count):
        doc = make_body("iris", f"i-{i}", lease_s=90)
        store.register(parse_registration(doc, "iris", now_ms=clock()))


def _renew_all(store: InMemoryRegistry, meter: RenewalMeter, clock: Any, ids: range) -> None:
    for i in ids:
        store.renew("iris", f"i-{i}")
        meter.record(clock())


def test_mass_silence_suspends_eviction(
    store: InMemoryRegistry, clock: Any, make_body: Any
) -> None:
    """When most instances stop renewing at once, nothing is evicted (a partition)."""
    meter = RenewalMeter(60)
    evictor = Evictor(store, meter, PreservationConfig(), clock)
    _register(store, clock, make_body, 20)
    for _ in range(4):  # two healthy minutes of 30 s heartbeats
        clock.advance(30)
        _renew_all(store, meter, clock, range(20))
    assert evictor.sweep() == 0 and not evictor.state.active
    for _ in range(4):  # then only 5 of 20 renew, for two minutes
        clock.advance(30)
        _renew_all(store, meter, clock, range(5))
    assert evictor.sweep() == 0
    assert evictor.state.active
    assert store.size() == 20  # 15 expired leases, all kept


def test_a_few_deaths_are_evicted_within_the_cap(
    store: InMemoryRegistry, clock: Any, make_body: Any
) -> None:
    """With renewals above the threshold, expired leases go, at most 15 % per sweep."""
    meter = RenewalMeter(60)
    evictor = Evictor(store, meter, PreservationConfig(), clock)
    _register(store, clock, make_body, 40)
    for _ in range(4):
        clock.advance(30)
        _renew_all(store, meter, clock, range(40))
    for _ in range(4):  # 4 of 40 die: renewals stay at 90 % of expected
        clock.advance(30)
        _renew_all(store, meter, clock, range(36))
    assert not evictor.assess().active
    assert evictor.sweep() == 4  # within the cap of 40 - int(34) = 6
    assert store.size() == 36


def test_cap_spreads_a_large_expiry_over_sweeps(
    store: InMemoryRegistry, clock: Any, make_body: Any
) -> None:
    """Without self-preservation, 20 expired of 20 still go only 3 per sweep."""
    meter = RenewalMeter(60)
    evictor = Evictor(store, meter, PreservationConfig(enabled=False), clock)
    _register(store, clock, make_body, 20)
    clock.advance(91)
    assert [evictor.sweep() for _ in range(3)] == [3, 3, 3]  # 20 -> 17 -> 14 -> 11
    assert store.size() == 11


def test_disabled_self_preservation_evicts(
    store: InMemoryRegistry, clock: Any, make_body: Any
) -> None:
    """AIMP_REGISTRY_SELF_PRESERVATION=false: a silent instance is evicted even if alone."""
    meter = RenewalMeter(60)
    on = Evictor(store, meter, PreservationConfig(enabled=True), clock)
    off = Evictor(store, meter, PreservationConfig(enabled=False), clock)
    _register(store, clock, make_body, 1)
    clock.advance(91)
    assert on.sweep() == 0 and on.state.active
    assert off.sweep() == 1 and not off.state.enabled


def test_restart_gap_is_not_counted_as_missed_renewals(
    clock: Any, make_body: Any, store: InMemoryRegistry
) -> None:
    """After a restart, loaded instances count only once they had a full window to renew."""
    _register(store, clock, make_body, 10)
    clock.advance(600)  # ten minutes of downtime
    records = [r for _, items in store.applications() for r in items]
    fresh = InMemoryRegistry(clock)
    fresh.restore(records, version=10)
    meter = RenewalMeter(60)
    evictor = Evictor(fresh, meter, PreservationConfig(), clock)
    evictor.restart_counting()
    assert evictor.assess().mature_instances == 0
    clock.advance(30)
    _renew_all(fresh, meter, clock, range(10))
    clock.advance(30)
    _renew_all(fresh, meter, clock, range(10))
    state = evictor.assess()
    assert state.mature_instances == 10 and not state.active
