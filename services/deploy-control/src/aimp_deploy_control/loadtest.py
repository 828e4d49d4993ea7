"""Load-test decisions (pure): the request rate to try next, when to stop, what to recommend.

A load test offers one replica a fixed request rate for a step, measures it, and asks
:func:`next_rate` what to do next. A step *passes* when its p99 latency is within the
target, at most 1 % of its calls failed, and the replica answered at least 95 % of the
offered rate (an open-loop load: a replica that falls behind answers at a slower pace
than the calls are sent). The search ramps the rate up geometrically (``growth``
times the last passing rate) until a step fails or ``max_rps`` passes, then bisects
between the highest passing rate below every failed one and the lowest failed rate until
they are within ``resolution`` of each other (relative, at least ``min_rps`` apart).

The result never exceeds a rate that failed: a noisy pass above a failure is ignored.

Recommendations (:func:`recommend`) from the highest passing step:

* concurrency = ceil(rate x p99 latency) (Little's law, L = lambda x W, with the p99
  instead of the mean latency): calls in flight at the sustained rate while calls are as
  slow as the tail. With the mean it would be the *average* number in flight, and a
  concurrency limit at the average queues calls about half the time.
* autoscaling target = ``utilisation`` x rate (0.7 by default: Knative's default target
  utilisation): a replica is scaled out at 70 % of what it can sustain, so the headroom
  absorbs a burst while a new replica cold-starts, and latency stays off the knee.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from aimp_core.errors import Conflict

#: A step with more failed calls than this (a fraction) fails.
MAX_ERROR_RATE = 0.01
#: A step whose answered rate is below this share of the offered rate fails.
MIN_ACHIEVED_RATIO = 0.95


class LoadTestState(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"  # finished with a result
    FAILED = "failed"  # no result: an error, or even the lowest rate failed
    CANCELLED = "cancelled"  # deploy-control stopped during it


ALLOWED: dict[LoadTestState, frozenset[LoadTestState]] = {
    LoadTestState.RUNNING: frozenset(
        {LoadTestState.DONE, LoadTestState.FAILED, LoadTestState.CANCELLED}
    ),
    LoadTestState.DONE: frozenset(),
    LoadTestState.FAILED: frozenset(),
    LoadTestState.CANCELLED: frozenset(),
}


class IllegalLoadTestTransition(Conflict):
    """A load test cannot go from its state to the one asked for (409)."""

    def __init__(self, current: LoadTestState, target: LoadTestState) -> None:
        super().__init__(
            f"a load test that is {current} cannot become {target}: only a running one "
            "finishes; POST /v1/deployments/{name}/loadtest starts a new one"
        )


def transition(current: LoadTestState, target: LoadTestState) -> LoadTestState:
    if target not in ALLOWED[current]:
        raise IllegalLoadTestTransition(current, target)
    return target


class StopReason(enum.StrEnum):
    CONVERGED = "converged"  # the highest passing and lowest failing rates are close
    MAX_RATE = "max_rate"  # the cap passed: the replica sustains at least max_rps
    BELOW_MIN = "below_min"  # even min_rps failed
    MAX_STEPS = "max_steps"  # the step budget ran out; the best rate so far is the result


@dataclass(frozen=True)
class SearchConfig:
    latency_target_ms: float
    #: The highest rate tried (the caller's cap).
    max_rps: float
    start_rps: float = 10.0
    #: The lowest rate tried, and the smallest gap bisection resolves.
    min_rps: float = 1.0
    growth: float = 2.0
    #: Bisection stops when failing - passing <= resolution x passing.
    resolution: float = 0.1
    max_steps: int = 25

    def __post_init__(self) -> None:
        if not (self.latency_target_ms > 0 and self.min_rps > 0 and self.growth > 1):
            raise ValueError("latency_target_ms and min_rps must be > 0 and growth > 1")
        if not 0 < self.resolution < 1 or self.max_steps < 1:
            raise ValueError("resolution must be in (0, 1) and max_steps >= 1")
        if self.max_rps < self.min_rps:
            raise ValueError(f"max_rps {self.max_rps} is below min_rps {self.min_rps}")


@dataclass(frozen=True)
class Step:
    """One measured step."""

    offered_rps: float
    achieved_rps: float
    #: None when no call succeeded.
    p99_ms: float | None
    mean_ms: float | None
    error_rate: float
    calls: int


@dataclass(frozen=True)
class Verdict:
    passed: bool
    #: What failed, in words ("p99 62.1 ms > target 50 ms"); "" when it passed.
    reason: str


def verdict(cfg: SearchConfig, step: Step) -> Verdict:
    why = []
    if step.p99_ms is None:
        why.append("no call succeeded")
    elif step.p99_ms > cfg.latency_target_ms:
        why.append(f"p99 {step.p99_ms:.1f} ms > target {cfg.latency_target_ms:g} ms")
    if step.error_rate > MAX_ERROR_RATE:
        why.append(f"{step.error_rate:.1%} of calls failed (> {MAX_ERROR_RATE:.0%})")
    if step.achieved_rps < MIN_ACHIEVED_RATIO * step.offered_rps:
        why.append(
            f"answered {step.achieved_rps:.1f} of {step.offered_rps:.1f} calls/s "
            f"(< {MIN_ACHIEVED_RATIO:.0%})"
        )
    return Verdict(not why, "; ".join(why))


def bracket(cfg: SearchConfig, steps: Sequence[Step]) -> tuple[Step | None, Step | None]:
    """(the highest passing step below every failed rate, the lowest failed step)."""
    failed = [s for s in steps if not verdict(cfg, s).passed]
    bad = min(failed, key=lambda s: s.offered_rps, default=None)
    ceiling = bad.offered_rps if bad is not None else math.inf
    good = max(
        (s for s in steps if s.offered_rps < ceiling and verdict(cfg, s).passed),
        key=lambda s: s.offered_rps,
        default=None,
    )
    return good, bad


def next_rate(cfg: SearchConfig, steps: Sequence[Step]) -> float | StopReason:
    """The rate of the next step, or why the search is over (no step budget here)."""
    good, bad = bracket(cfg, steps)
    if bad is None:
        if good is None:  # nothing measured yet
            return max(cfg.min_rps, min(cfg.start_rps, cfg.max_rps))
        if good.offered_rps >= cfg.max_rps:
            return StopReason.MAX_RATE
        return min(good.offered_rps * cfg.growth, cfg.max_rps)
    if good is None:  # even the first rate failed: halve down to min_rps
        if bad.offered_rps <= cfg.min_rps:
            return StopReason.BELOW_MIN
        return max(bad.offered_rps / 2, cfg.min_rps)
    gap = bad.offered_rps - good.offered_rps
    if gap <= max(cfg.resolution * good.offered_rps, cfg.min_rps):
        return StopReason.CONVERGED
    return (good.offered_rps + bad.offered_rps) / 2


def next_step(cfg: SearchConfig, steps: Sequence[Step]) -> float | StopReason:
    """:func:`next_rate`, bounded by the step budget."""
    if len(steps) >= cfg.max_steps:
        return StopReason.MAX_STEPS
    return next_rate(cfg, steps)


@dataclass(frozen=True)
class Recommendation:
    #: The highest rate one replica sustained within the target.
    max_rate_rps: float
    recommended_concurrency: int
    autoscaling_target_rps: float
    #: The p99 latency measured at that rate.
    p99_ms: float


def recommend(
    cfg: SearchConfig, steps: Sequence[Step], utilisation: float
) -> Recommendation | None:
    """What the steps say one replica can take (None when no step passed)."""
    good, _ = bracket(cfg, steps)
    if good is None or good.p99_ms is None:
        return None
    rate = good.offered_rps
    return Recommendation(
        max_rate_rps=rate,
        recommended_concurrency=max(1, math.ceil(rate * good.p99_ms / 1000)),
        autoscaling_target_rps=rate * utilisation,
        p99_ms=good.p99_ms,
    )


def summarise(
    offered_rps: float,
    latencies_ms: Sequence[float],
    errors: int,
    *,
    duration_s: float,
    answered_at_s: Sequence[float] = (),
) -> Step:
    """A step from its successful calls' latencies and the times they were answered, and
    its failed calls.

    The achieved rate is the pace of the successful answers: (answers - 1) / (last - first
    answer time). Unlike answers / elapsed time it does not count the last call's latency
    as lost time, which would fail short steps of a replica that keeps up; a replica that
    does not keep up answers at its own, slower pace. With fewer than two answers it is
    answers / ``duration_s``.
    """
    ok = len(latencies_ms)
    calls = ok + errors
    ordered = sorted(latencies_ms)
    p99 = ordered[max(0, math.ceil(0.99 * ok) - 1)] if ok else None  # nearest rank
    span = max(answered_at_s) - min(answered_at_s) if len(answered_at_s) >= 2 else 0.0
    if span > 0:
        achieved = (len(answered_at_s) - 1) / span
    else:
        achieved = ok / duration_s if duration_s > 0 else 0.0
    return Step(
        offered_rps=offered_rps,
        achieved_rps=achieved,
        p99_ms=p99,
        mean_ms=sum(ordered) / ok if ok else None,
        error_rate=errors / calls if calls else 1.0,
        calls=calls,
    )
