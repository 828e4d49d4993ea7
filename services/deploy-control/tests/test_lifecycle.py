"""Unit tests of the pod lifecycle state machine and the restart backoff."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_deploy_control.lifecycle import (
    ALLOWED,
    IllegalTransition,
    PodState,
    restart_delay_s,
    transition,
)

LEGAL = {
    ("PENDING", "STARTING"),
    ("PENDING", "STOPPING"),
    ("STARTING", "RUNNING"),
    ("STARTING", "CRASHED"),
    ("STARTING", "STOPPING"),
    ("RUNNING", "CRASHED"),
    ("RUNNING", "STOPPING"),
    ("CRASHED", "STARTING"),
    ("CRASHED", "STOPPING"),
    ("STOPPING", "STOPPED"),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(PodState, PodState)))
def test_every_transition(current: PodState, target: PodState) -> None:
    """Exactly the lifecycle's edges are allowed; any other raises IllegalTransition."""
    if (current.value, target.value) in LEGAL:
        assert transition("p", current, target) is target
    else:
        with pytest.raises(IllegalTransition) as err:
            transition("p", current, target)
        assert f"cannot go from {current} to {target}" in str(err.value)


def test_stopped_is_final_and_says_so() -> None:
    """The error for leaving STOPPED says the state is final."""
    assert ALLOWED[PodState.STOPPED] == frozenset()
    with pytest.raises(IllegalTransition, match="final"):
        transition("iris-0", PodState.STOPPED, PodState.STARTING)


def test_restart_delay_doubles_to_the_ceiling() -> None:
    """1 s, 2 s, 4 s, ... capped at 30 s."""
    delays = [restart_delay_s(n, initial_s=1, max_s=30) for n in range(1, 8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30]


@given(n=st.integers(0, 10_000), initial=st.floats(0.01, 5), ceiling=st.floats(5, 300))
def test_restart_delay_is_bounded_and_monotonic(n: int, initial: float, ceiling: float) -> None:
    """The delay is within [0, ceiling] and never shrinks as crashes accumulate."""
    delay = restart_delay_s(n, initial_s=initial, max_s=ceiling)
    assert 0 <= delay <= ceiling
    assert restart_delay_s(n + 1, initial_s=initial, max_s=ceiling) >= delay
