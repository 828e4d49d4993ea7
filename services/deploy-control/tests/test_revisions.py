"""Unit tests of the pure revision decisions: lifecycle, traffic splits, rollback choice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.errors import BadRequest, Conflict
from aimp_deploy_control.revisions import (
    ALLOWED,
    FULL,
    TAKES_TRAFFIC,
    IllegalRevisionTransition,
    RevisionFacts,
    RevisionState,
    promote_split,
    revision_name,
    revision_number,
    rollback_target,
    states_after_split,
    to_scale_down,
    transition,
    validate_split,
)

S = RevisionState


def facts(*specs: tuple[str, RevisionState, int, int]) -> list[RevisionFacts]:
    return [RevisionFacts(n, s, t, q) for n, s, t, q in specs]


@given(st.sampled_from(list(S)), st.sampled_from(list(S)))
def test_transitions_follow_the_table(current: RevisionState, target: RevisionState) -> None:
    """A move is allowed exactly when the table lists it (or it stays put); otherwise the
    409 names both states and what is allowed."""
    if target is current or target in ALLOWED[current]:
        assert transition("r2", current, target) is target
    else:
        with pytest.raises(IllegalRevisionTransition) as err:
            transition("r2", current, target)
        assert err.value.status == 409
        assert f"revision r2 is {current}" in err.value.detail and str(target) in err.value.detail


@given(st.integers(min_value=1, max_value=10**9 - 1))
def test_revision_names_round_trip(number: int) -> None:
    """r<number> parses back to the number; anything else is not a revision name."""
    assert revision_number(revision_name(number)) == number
    assert revision_number(f"x{number}") is None and revision_number("r0") is None


@st.composite
def splits(draw: st.DrawFn) -> tuple[list[RevisionFacts], dict[str, int]]:
    """Revisions (all able to take traffic) and weights for some of them."""
    n = draw(st.integers(min_value=1, max_value=6))
    revs = [
        RevisionFacts(revision_name(i + 1), draw(st.sampled_from(sorted(TAKES_TRAFFIC))), 0)
        for i in range(n)
    ]
    named = draw(st.lists(st.sampled_from([r.name for r in revs]), unique=True, min_size=1))
    weights = {name: draw(st.integers(min_value=0, max_value=FULL)) for name in named}
    return revs, weights


@given(splits())
def test_a_split_is_accepted_exactly_when_it_sums_to_100(
    case: tuple[list[RevisionFacts], dict[str, int]],
) -> None:
    """Weights summing to 100 give every revision its weight (0 when unnamed); any other
    sum is a 400 that states the sum."""
    revs, weights = case
    if sum(weights.values()) == FULL:
        out = validate_split(weights, revs)
        assert set(out) == {r.name for r in revs} and sum(out.values()) == FULL
        assert all(out[n] == weights.get(n, 0) for n in out)
        states = states_after_split(revs, out)
        assert all((states[n] is S.SERVING) == (out[n] > 0) for n in out)
    else:
        with pytest.raises(BadRequest, match=f"add up to {sum(weights.values())}"):
            validate_split(weights, revs)


def test_unknown_or_unready_revisions_cannot_take_traffic() -> None:
    """An unknown revision is a 400 naming the known ones; a warming one is a 409."""
    revs = facts(("r1", S.SERVING, 100, 1), ("r2", S.WARMING, 0, 0))
    with pytest.raises(BadRequest, match=r"unknown revision.*r3.*has r1, r2"):
        validate_split({"r1": 80, "r3": 20}, revs)
    with pytest.raises(Conflict, match="r2 is warming"):
        validate_split({"r1": 80, "r2": 20}, revs)
    assert validate_split({"r1": 100, "r2": 0}, revs) == {"r1": 100, "r2": 0}


def test_promote_gives_all_and_scales_the_others_down() -> None:
    """Promote is 100% to the target; every other revision with pods is scaled down."""
    revs = facts(
        ("r1", S.SERVING, 80, 1),
        ("r2", S.SERVING, 20, 0),
        ("r3", S.FAILED, 0, 0),
        ("r4", S.SCALED_DOWN, 0, 0),
    )
    assert promote_split(revs, "r2") == {"r1": 0, "r2": 100, "r3": 0, "r4": 0}
    assert to_scale_down(revs, "r2") == ["r1", "r3"]


def test_rollback_returns_to_the_latest_other_revision_that_had_everything() -> None:
    """After r2 was promoted, rollback picks r1; during a canary (nobody at 100%) it picks
    the last one that had 100%; with no such revision it is a 409."""
    promoted = facts(("r1", S.SCALED_DOWN, 0, 1), ("r2", S.SERVING, 100, 2))
    assert rollback_target(promoted) == "r1"
    canary = facts(("r1", S.SERVING, 80, 1), ("r2", S.SERVING, 20, 0))
    assert rollback_target(canary) == "r1"
    back_and_forth = facts(("r1", S.SERVING, 100, 3), ("r2", S.SCALED_DOWN, 0, 2))
    assert rollback_target(back_and_forth) == "r2"
    with pytest.raises(Conflict, match="no earlier revision"):
        rollback_target(facts(("r1", S.SERVING, 100, 1)))
