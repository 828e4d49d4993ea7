"""The load test's search and recommendations (pure)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimp_deploy_control.loadtest import (
    IllegalLoadTestTransition,
    LoadTestState,
    SearchConfig,
    Step,
    StopReason,
    bracket,
    next_step,
    recommend,
    summarise,
    transition,
    verdict,
)


def step(rate: float, *, p99: float = 10.0, errors: float = 0.0, achieved: float = 1.0) -> Step:
    return Step(rate, rate * achieved, p99, p99 / 2, errors, 100)


def run(cfg: SearchConfig, system: Callable[[float], Step]) -> tuple[list[Step], StopReason]:
    steps: list[Step] = []
    while not isinstance(decision := next_step(cfg, steps), StopReason):
        steps.append(system(decision))
    return steps, decision


def knee_system(knee: float, target: float) -> Callable[[float], Step]:
    """A monotone replica: within the target up to ``knee`` calls/s, beyond it too slow."""
    return lambda rate: step(rate, p99=target * (0.5 if rate <= knee else 3))


configs = st.builds(
    SearchConfig,
    latency_target_ms=st.just(50.0),
    max_rps=st.floats(1, 5000),
    start_rps=st.floats(1, 100),
    min_rps=st.floats(0.1, 1),
    growth=st.floats(1.2, 4),
    resolution=st.floats(0.02, 0.5),
    max_steps=st.just(10_000),
)


def step_bound(cfg: SearchConfig) -> int:
    """Ramp up (or halve down) to the knee, then bisect to the resolution."""
    ramp = math.ceil(math.log(max(cfg.max_rps / cfg.min_rps, 1), cfg.growth)) + 2
    halve = math.ceil(math.log2(max(cfg.start_rps / cfg.min_rps, 1))) + 2
    bisect = math.ceil(math.log2(max(cfg.growth, 2) / cfg.resolution)) + 2
    return ramp + halve + bisect


@settings(max_examples=300, deadline=None)
@given(cfg=configs, knee=st.floats(0.01, 10_000))
def test_monotone_system_ends_within_one_bisection_step_of_its_knee(
    cfg: SearchConfig, knee: float
) -> None:
    """On a replica that passes exactly up to a knee, the result is at most the knee and
    less than one bisection gap below it (or the cap when the knee is above it)."""
    steps, reason = run(cfg, knee_system(knee, cfg.latency_target_ms))
    rec = recommend(cfg, steps, 0.7)
    if knee < cfg.min_rps:
        assert reason is StopReason.BELOW_MIN and rec is None
        return
    assert rec is not None
    if knee >= cfg.max_rps:
        assert reason is StopReason.MAX_RATE and rec.max_rate_rps == pytest.approx(cfg.max_rps)
        return
    assert reason is StopReason.CONVERGED
    good, bad = bracket(cfg, steps)
    assert good is not None and bad is not None
    assert good.offered_rps <= knee < bad.offered_rps
    assert bad.offered_rps - good.offered_rps <= max(cfg.resolution * good.offered_rps, cfg.min_rps)


@settings(max_examples=300, deadline=None)
@given(cfg=configs, data=st.data())
def test_result_never_exceeds_a_failed_rate_and_search_terminates(
    cfg: SearchConfig, data: st.DataObject
) -> None:
    """Whatever each step measures (a noisy, non-monotone replica), the search stops within
    a bound of steps and its result is below every rate that failed."""
    outcomes: dict[float, bool] = {}

    def noisy(rate: float) -> Step:
        passed = outcomes.setdefault(rate, data.draw(st.booleans(), label=f"pass@{rate}"))
        return step(rate, p99=10 if passed else 999)

    steps, reason = run(cfg, noisy)
    assert reason is not StopReason.MAX_STEPS
    assert len(steps) <= step_bound(cfg)
    rec = recommend(cfg, steps, 0.7)
    failed = [s.offered_rps for s in steps if not verdict(cfg, s).passed]
    if rec is not None:
        assert all(rec.max_rate_rps < f for f in failed)
        assert rec.max_rate_rps <= cfg.max_rps


@given(max_steps=st.integers(1, 8))
def test_step_budget_stops_the_search(max_steps: int) -> None:
    """A search never runs more steps than its budget and says it ran out."""
    cfg = SearchConfig(latency_target_ms=50, max_rps=1e9, max_steps=max_steps)
    steps, reason = run(cfg, knee_system(1e12, 50))
    assert len(steps) == max_steps and reason is StopReason.MAX_STEPS


def test_ramp_then_bisect_sequence() -> None:
    """The rates ramp up by the growth factor, then bisect between passing and failing."""
    cfg = SearchConfig(latency_target_ms=50, max_rps=1000, start_rps=10, resolution=0.1)
    steps, reason = run(cfg, knee_system(100, 50))
    rates = [s.offered_rps for s in steps]
    assert rates[:5] == [10, 20, 40, 80, 160]
    assert rates[5] == 120 and rates[6] == 100  # bisect (80, 160), then (80, 120)
    assert reason is StopReason.CONVERGED


@pytest.mark.parametrize(
    ("measured", "why"),
    [
        (step(10, p99=51), "p99 51.0 ms > target 50 ms"),
        (step(10, errors=0.02), "2.0% of calls failed"),
        (step(10, achieved=0.9), "answered 9.0 of 10.0 calls/s"),
        (Step(10, 0, None, None, 1.0, 5), "no call succeeded"),
    ],
)
def test_each_criterion_fails_a_step_with_its_reason(measured: Step, why: str) -> None:
    """p99 over the target, more than 1 % errors or under 95 % answered each fail a step."""
    cfg = SearchConfig(latency_target_ms=50, max_rps=100)
    v = verdict(cfg, measured)
    assert not v.passed and why in v.reason
    assert verdict(cfg, step(10, p99=50, errors=0.01, achieved=0.95)).passed


def test_recommendations_use_littles_law_with_p99_and_the_utilisation() -> None:
    """Concurrency is ceil(rate x p99) and the autoscaling target a share of the rate."""
    cfg = SearchConfig(latency_target_ms=50, max_rps=1000)
    rec = recommend(cfg, [step(200, p99=42), step(400, p99=80)], 0.7)
    assert rec is not None
    assert rec.max_rate_rps == 200 and rec.p99_ms == 42
    assert rec.recommended_concurrency == math.ceil(200 * 0.042)  # 9
    assert rec.autoscaling_target_rps == pytest.approx(140)
    assert recommend(cfg, [step(5, p99=99)], 0.7) is None


def test_summarise_reports_nearest_rank_p99_and_rates() -> None:
    """A step's p99 is the nearest-rank 99th percentile of its successful latencies, and
    its achieved rate the pace of its answers, not lowered by the last call's latency."""
    latencies = [float(i) for i in range(1, 201)]  # 1..200 ms
    answered = [0.3 + i / 100 for i in range(200)]  # one answer every 10 ms
    s = summarise(100, latencies, errors=2, duration_s=2.0, answered_at_s=answered)
    assert s.p99_ms == 198 and s.mean_ms == pytest.approx(100.5)
    assert s.achieved_rps == pytest.approx(100)
    assert s.error_rate == pytest.approx(2 / 202) and s.calls == 202
    behind = summarise(
        100, latencies, 0, duration_s=2.0, answered_at_s=[i / 50 for i in range(200)]
    )
    assert behind.achieved_rps == pytest.approx(50)  # a replica answering at its own pace
    one = summarise(10, [5.0], errors=0, duration_s=0.5, answered_at_s=[0.1])
    assert one.achieved_rps == 2.0
    empty = summarise(100, [], errors=3, duration_s=1.0)
    assert empty.p99_ms is None and empty.error_rate == 1.0


def test_finished_load_test_cannot_change_state() -> None:
    """Only a running load test finishes; a finished one refuses another transition."""
    assert transition(LoadTestState.RUNNING, LoadTestState.DONE) is LoadTestState.DONE
    with pytest.raises(IllegalLoadTestTransition, match="only a running one"):
        transition(LoadTestState.DONE, LoadTestState.FAILED)
