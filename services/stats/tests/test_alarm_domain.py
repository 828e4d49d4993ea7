"""Unit and property tests of the alarm decisions: the hold state machine and metric values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_stats.alarm_domain import (
    MIB,
    AlertState,
    Phase,
    PodSample,
    ServiceWindow,
    Transition,
    holds,
    matches,
    pod_value,
    service_value,
    step,
)


def run(
    samples: list[tuple[float, bool]], hold_s: float
) -> tuple[list[Transition], list[AlertState]]:
    """Drive the state machine with a fake clock: each sample is (seconds later, holding)."""
    state, now = AlertState(), 1_000.0
    transitions, states = [], []
    for dt, holding in samples:
        now += dt
        state, transition = step(state, 1.0 if holding else 0.0, holding, now, hold_s)
        states.append(state)
        if transition is not None:
            transitions.append(transition)
    return transitions, states


def oracle(samples: list[tuple[float, bool]], hold_s: float) -> list[tuple[str, float]]:
    """Expected events from runs of holding samples: fire at the first sample of a run that
    is hold_s or more after the run began; resolve at the first non-holding sample after."""
    events: list[tuple[str, float]] = []
    now, run_start, fired = 1_000.0, None, False
    for dt, holding in samples:
        now += dt
        if holding:
            if run_start is None:
                run_start = now
            if not fired and now - run_start >= hold_s:
                events.append(("firing", now))
                fired = True
        else:
            if fired:
                events.append(("resolved", now))
            run_start, fired = None, False
    return events


samples_st = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=30.0), st.booleans()), max_size=60
)
hold_st = st.sampled_from([0.0, 0.5, 6.0, 30.0, 60.0, 300.0])


@given(samples=samples_st, hold_s=hold_st)
def test_state_machine_matches_the_run_oracle(
    samples: list[tuple[float, bool]], hold_s: float
) -> None:
    """Firing and resolved events happen exactly where the run-based oracle says."""
    transitions, _ = run(samples, hold_s)
    assert [(t.kind, t.at) for t in transitions] == oracle(samples, hold_s)


@given(samples=samples_st, hold_s=hold_st)
def test_events_alternate_and_firing_respects_hold(
    samples: list[tuple[float, bool]], hold_s: float
) -> None:
    """Events alternate firing/resolved from firing; each firing comes hold_s after its start."""
    transitions, states = run(samples, hold_s)
    kinds = [t.kind for t in transitions]
    assert kinds == ["firing", "resolved"] * (len(kinds) // 2) + ["firing"] * (len(kinds) % 2)
    for t in transitions:
        if t.kind == "firing":
            assert t.at - t.active_since >= hold_s
    if states:
        assert (states[-1].phase is Phase.FIRING) == (kinds[-1:] == ["firing"])


def test_hold_of_six_seconds_with_a_fake_clock() -> None:
    """Holding from t=0 with hold 6 s: pending at 0..5, firing at 6, resolved at the first miss."""
    state = AlertState()
    seen = []
    for t in range(10):
        holding = t < 8
        state, transition = step(state, 50.0, holding, float(t), 6.0)
        seen.append((state.phase, transition.kind if transition else None))
    assert seen[:6] == [(Phase.PENDING, None)] * 6
    assert seen[6] == (Phase.FIRING, "firing")
    assert seen[7] == (Phase.FIRING, None)
    assert seen[8] == (Phase.OK, "resolved")
    assert seen[9] == (Phase.OK, None)


def test_a_pending_alert_that_stops_holding_never_fires() -> None:
    """A blip shorter than the hold returns to OK silently."""
    state, _ = step(AlertState(), 1.0, True, 0.0, 60.0)
    state, transition = step(state, 0.0, False, 30.0, 60.0)
    assert state.phase is Phase.OK and transition is None


@pytest.mark.parametrize(
    ("value", "comparison", "threshold", "expected"),
    [
        (5.0, ">", 4.0, True),
        (4.0, ">", 4.0, False),
        (4.0, ">=", 4.0, True),
        (3.0, "<", 4.0, True),
        (4.0, "<=", 4.0, True),
        (None, "<", 4.0, False),
        (float("nan"), ">", 0.0, False),
    ],
)
def test_holds(value: float | None, comparison: str, threshold: float, expected: bool) -> None:
    """Comparisons mean what they say; no data never holds."""
    assert holds(value, comparison, threshold) is expected  # type: ignore[arg-type]


def test_service_values() -> None:
    """Rates are percent of calls, qps is calls per second, too few calls give no value."""
    window = ServiceWindow(requests=200, errors=30, throttled=10, p99_ms=120.0)
    assert service_value("error_rate", window, 60, 1) == 15.0
    assert service_value("throttled_rate", window, 60, 1) == 5.0
    assert service_value("p99_ms", window, 60, 1) == 120.0
    assert service_value("qps", window, 10, 1) == 20.0
    assert service_value("error_rate", window, 60, 500) is None
    empty = ServiceWindow(0, 0, 0, None)
    assert service_value("qps", empty, 60, 1) == 0.0
    assert service_value("error_rate", empty, 60, 1) is None


def test_pod_values() -> None:
    """CPU is a rate between two scrapes; memory in MiB; GPU values only when exposed."""
    before = PodSample("p", "s", at=100.0, cpu_seconds=10.0, resident_bytes=64 * MIB)
    after = PodSample(
        "p",
        "s",
        at=102.0,
        cpu_seconds=11.5,
        resident_bytes=80 * MIB,
        gpu_utilization=(0.25, 0.9),
        gpu_memory_used_bytes=3e9,
        gpu_memory_total_bytes=12e9,
    )
    assert pod_value("pod_cpu", before, after) == 75.0
    assert pod_value("pod_cpu", None, after) is None
    assert pod_value("pod_cpu", after, before) is None  # a counter reset is no data
    assert pod_value("pod_memory", None, after) == 80.0
    assert pod_value("gpu_util", None, after) == 90.0
    assert pod_value("gpu_memory", None, after) == 25.0
    assert pod_value("gpu_util", None, before) is None
    assert pod_value("gpu_memory", None, before) is None


def test_selectors() -> None:
    """Selectors are names or shell patterns, case-sensitive."""
    assert matches("*", "iris") and matches("iris*", "iris-cpp") and matches("iris", "iris")
    assert not matches("iris", "iris-cpp") and not matches("IRIS", "iris")
