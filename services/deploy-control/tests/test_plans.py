"""Unit tests of the pure scaling and rolling-restart decisions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_deploy_control.plans import (
    Action,
    RegistryView,
    ScalePlan,
    Step,
    plan_rollout,
    registry_view,
    replacement_order,
    replacement_up,
    scale_plan,
)


def test_scale_up_and_down_examples() -> None:
    """Scaling adds the missing low replicas and stops the highest-numbered first."""
    assert scale_plan([0], 2) == ScalePlan(start=(1,), stop=())
    assert scale_plan([0, 1, 2], 1) == ScalePlan(start=(), stop=(2, 1))
    assert scale_plan([0, 1], 0) == ScalePlan(start=(), stop=(1, 0))
    assert scale_plan([1, 3], 2) == ScalePlan(start=(0,), stop=(3,))
    assert scale_plan([], 0) == ScalePlan(start=(), stop=())
    with pytest.raises(ValueError, match=">= 0"):
        scale_plan([0], -1)


@given(existing=st.sets(st.integers(0, 20)), desired=st.integers(0, 20))
def test_scale_plan_reaches_exactly_the_dense_range(existing: set[int], desired: int) -> None:
    """After the plan the replicas are exactly 0..desired-1; stops are highest first, and
    nothing is both started and stopped or started twice."""
    plan = scale_plan(existing, desired)
    after = (existing | set(plan.start)) - set(plan.stop)
    assert after == set(range(desired))
    assert list(plan.stop) == sorted(plan.stop, reverse=True)
    assert not set(plan.start) & existing and not set(plan.stop) - existing
    assert len(set(plan.start)) == len(plan.start)


def test_replacement_order_puts_replicas_not_serving_first() -> None:
    """Crashed or starting replicas are replaced before serving ones, ascending in each group."""
    assert replacement_order({0: True, 1: True, 2: True}) == [0, 1, 2]
    assert replacement_order({0: True, 1: False, 2: True, 3: False}) == [1, 3, 0, 2]


def test_two_replicas_are_replaced_one_at_a_time() -> None:
    """Each replica: stop it, start it, wait until it is UP; then the next."""
    assert plan_rollout({0: True, 1: True}, surge_allowed=True) == [
        Step(Action.STOP, 0),
        Step(Action.START, 0),
        Step(Action.WAIT_UP, 0, completes_replacement=True),
        Step(Action.STOP, 1),
        Step(Action.START, 1),
        Step(Action.WAIT_UP, 1, completes_replacement=True),
    ]


def test_a_single_serving_replica_gets_a_surge_replica() -> None:
    """One serving replica: an extra replica answers while it restarts, and stops last."""
    assert plan_rollout({0: True}, surge_allowed=True) == [
        Step(Action.START, 1),
        Step(Action.WAIT_UP, 1),
        Step(Action.STOP, 0),
        Step(Action.START, 0),
        Step(Action.WAIT_UP, 0, completes_replacement=True),
        Step(Action.STOP, 1),
    ]
    # No room for an extra replica, or nothing serving to protect: a plain replacement.
    plain = [Step(Action.STOP, 0), Step(Action.START, 0), Step(Action.WAIT_UP, 0, True)]
    assert plan_rollout({0: True}, surge_allowed=False) == plain
    assert plan_rollout({0: False}, surge_allowed=True) == plain
    assert plan_rollout({}, surge_allowed=True) == []


@given(
    ready=st.dictionaries(st.integers(0, 7), st.booleans(), max_size=8),
    surge_allowed=st.booleans(),
)
def test_rollout_never_drops_more_than_one_serving_replica(
    ready: dict[int, bool], surge_allowed: bool
) -> None:
    """Simulating the plan: every replica is replaced exactly once, serving capacity never
    falls more than one below where it started (not at all with a surge), and the end state
    is every replica serving with no extra left over."""
    serving = {r for r, up in ready.items() if up}
    floor = len(serving) - (0 if len(ready) == 1 and surge_allowed else 1)
    started: set[int] = set()
    replaced = 0
    steps = plan_rollout(ready, surge_allowed=surge_allowed)
    for step in steps:
        if step.action is Action.STOP:
            serving.discard(step.replica)
            assert len(serving) >= floor
        elif step.action is Action.START:
            started.add(step.replica)
        else:
            assert step.replica in started  # waits only for what it started
            serving.add(step.replica)
            replaced += step.completes_replacement
    assert replaced == len(ready)
    assert serving == set(ready)
    stops = [s.replica for s in steps if s.action is Action.STOP]
    assert sorted(r for r in stops if r in ready) == sorted(ready)


@pytest.mark.parametrize(
    ("sidecar_ready", "status", "reachable", "up"),
    [
        (True, "UP", True, True),
        (True, "STARTING", True, False),
        (True, "OUT_OF_SERVICE", True, False),
        (True, None, True, False),  # not registered yet: callers cannot find it
        (True, None, False, True),  # registry unreadable: the sidecar's readiness decides
        (False, "UP", True, False),  # e.g. draining, or its server died
        (False, None, False, False),
    ],
)
def test_what_a_replacement_waits_for(
    sidecar_ready: bool, status: str | None, reachable: bool, up: bool
) -> None:
    """UP = sidecar ready and listed UP in the registry (or the registry cannot be read)."""
    view = registry_view(status, reachable=reachable)
    assert replacement_up(sidecar_ready=sidecar_ready, registry=view) is up


def test_registry_view_names_each_case() -> None:
    """Statuses map onto the four views the decision distinguishes."""
    assert registry_view("UP", reachable=True) is RegistryView.UP
    assert registry_view("DOWN", reachable=True) is RegistryView.NOT_UP
    assert registry_view(None, reachable=True) is RegistryView.ABSENT
    assert registry_view("UP", reachable=False) is RegistryView.UNREACHABLE
