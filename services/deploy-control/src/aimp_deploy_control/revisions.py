"""A service's revisions: their lifecycle, traffic splits and rollback choice (pure).

A deployment (a service) has revisions ``r1``, ``r2``, ...; each runs its own pods,
labelled with its name (the sidecar registers it as ``aimp.revision``), and the
gateway splits the service's calls between them by weight. Nothing here does I/O:
the service (releases.py) reads facts, asks these functions, and acts.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aimp_core.errors import BadRequest, Conflict

#: Weights are whole percents: what people write and what the gateway splits on.
FULL = 100
_NAME = re.compile(r"^r([1-9][0-9]{0,8})$")


class RevisionState(enum.StrEnum):
    STARTING = "starting"  # pods started, not all UP yet
    WARMING = "warming"  # pods UP; sample requests are being sent to each
    READY = "ready"  # warmed; may take traffic, has none
    SERVING = "serving"  # has a share of the traffic
    SCALED_DOWN = "scaled_down"  # no pods (kept for a rollback)
    FAILED = "failed"  # its pods did not come UP or did not answer the warm-up


ALLOWED: dict[RevisionState, frozenset[RevisionState]] = {
    RevisionState.STARTING: frozenset(
        {RevisionState.WARMING, RevisionState.FAILED, RevisionState.SCALED_DOWN}
    ),
    # SERVING straight away: a revision that already has traffic (r1 of a new service,
    # any revision after deploy-control restarts) serves once warmed.
    RevisionState.WARMING: frozenset(
        {
            RevisionState.READY,
            RevisionState.SERVING,
            RevisionState.FAILED,
            RevisionState.SCALED_DOWN,
        }
    ),
    RevisionState.READY: frozenset(
        {RevisionState.SERVING, RevisionState.SCALED_DOWN, RevisionState.STARTING}
    ),
    RevisionState.SERVING: frozenset({RevisionState.READY, RevisionState.STARTING}),
    RevisionState.SCALED_DOWN: frozenset({RevisionState.STARTING}),
    RevisionState.FAILED: frozenset({RevisionState.STARTING, RevisionState.SCALED_DOWN}),
}

#: States whose pods should run (the others have none).
RUNS_PODS = frozenset(
    {RevisionState.STARTING, RevisionState.WARMING, RevisionState.READY, RevisionState.SERVING}
)
#: States that may be given traffic.
TAKES_TRAFFIC = frozenset({RevisionState.READY, RevisionState.SERVING})


class IllegalRevisionTransition(Conflict):
    """A revision cannot go from its state to the one asked for (409)."""

    def __init__(self, revision: str, current: RevisionState, target: RevisionState) -> None:
        allowed = ", ".join(sorted(ALLOWED[current])) or "nothing"
        super().__init__(
            f"revision {revision} is {current}; it cannot become {target} (from {current} "
            f"it may become {allowed})"
        )
        self.current = current
        self.target = target


def transition(revision: str, current: RevisionState, target: RevisionState) -> RevisionState:
    """``target`` when the lifecycle allows it from ``current`` (staying put is allowed)."""
    if target is not current and target not in ALLOWED[current]:
        raise IllegalRevisionTransition(revision, current, target)
    return target


def revision_name(number: int) -> str:
    return f"r{number}"


def revision_number(name: str) -> int | None:
    """1 for ``r1``; None for anything that is not a revision name."""
    match = _NAME.fullmatch(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class RevisionFacts:
    """What the decisions below need to know of one revision."""

    name: str
    state: RevisionState
    traffic: int
    #: Order in which revisions last got 100% (0: never); the highest is the newest.
    full_seq: int = 0


def validate_split(split: Mapping[str, int], revisions: Sequence[RevisionFacts]) -> dict[str, int]:
    """The whole new split (every revision, 0 where unnamed), or the reason it is refused:
    unknown revisions and bad weights are 400, a revision that cannot take traffic is 409."""
    known = {r.name: r for r in revisions}
    unknown = sorted(set(split) - set(known))
    if unknown:
        raise BadRequest(
            f"unknown revision(s) {', '.join(unknown)}; this deployment has "
            f"{', '.join(sorted(known, key=_order)) or 'none'}"
        )
    bad = {n: w for n, w in split.items() if not 0 <= w <= FULL}
    if bad:
        raise BadRequest(f"weights are percents from 0 to {FULL}; got {bad}")
    total = sum(split.values())
    if total != FULL:
        raise BadRequest(
            f"the weights add up to {total}, not {FULL}; give each revision its percent, "
            f'e.g. {{"r1": 80, "r2": 20}}'
        )
    for name, weight in split.items():
        state = known[name].state
        if weight > 0 and state not in TAKES_TRAFFIC:
            raise Conflict(
                f"revision {name} is {state} and cannot take traffic yet; wait until it is "
                f"ready (GET the deployment shows its warm-up), or give it 0"
            )
    return {r.name: split.get(r.name, 0) for r in revisions}


def states_after_split(
    revisions: Sequence[RevisionFacts], split: Mapping[str, int]
) -> dict[str, RevisionState]:
    """Each revision's state once ``split`` (a validated one) is in force."""
    out = {}
    for r in revisions:
        weight = split.get(r.name, 0)
        if weight > 0:
            out[r.name] = transition(r.name, r.state, RevisionState.SERVING)
        elif r.state is RevisionState.SERVING:
            out[r.name] = transition(r.name, r.state, RevisionState.READY)
        else:
            out[r.name] = r.state
    return out


def next_full_seq(revisions: Iterable[RevisionFacts]) -> int:
    return max((r.full_seq for r in revisions), default=0) + 1


def promote_split(revisions: Sequence[RevisionFacts], target: str) -> dict[str, int]:
    """100% to ``target``, 0 to every other revision (validated like any split)."""
    return validate_split({target: FULL}, revisions)


def rollback_target(revisions: Sequence[RevisionFacts]) -> str:
    """The revision a rollback returns to: the latest one that had 100% of the traffic,
    other than the one that has it now (if any); 409 when there is none."""
    holder = next((r.name for r in revisions if r.traffic == FULL), None)
    candidates = [r for r in revisions if r.full_seq > 0 and r.name != holder]
    if not candidates:
        raise Conflict(
            "there is no earlier revision to roll back to: no other revision has had 100% "
            "of the traffic; PUT .../traffic to split it by hand"
        )
    return max(candidates, key=lambda r: r.full_seq).name


def to_scale_down(revisions: Sequence[RevisionFacts], keep: str) -> list[str]:
    """The revisions whose pods stop once ``keep`` has all the traffic (in name order)."""
    return sorted(
        (
            r.name
            for r in revisions
            if r.name != keep and r.state in RUNS_PODS | {RevisionState.FAILED}
        ),
        key=_order,
    )


def _order(name: str) -> int:
    return revision_number(name) or 0
