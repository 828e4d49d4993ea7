"""Pure decisions for scaling and rolling restarts: which replica next, what to wait for.

Replicas are numbered 0..n-1 (pod id ``<deployment>-<replica>``). Scaling keeps that
range dense: it adds the missing low numbers and removes the highest first. A rolling
restart replaces one replica at a time and waits until its replacement is UP before
touching the next, so capacity never drops by more than one replica.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalePlan:
    #: Replicas to start, lowest first.
    start: tuple[int, ...]
    #: Replicas to stop, highest first (one at a time, each draining first).
    stop: tuple[int, ...]


def scale_plan(existing: Collection[int], desired: int) -> ScalePlan:
    """Bring the running replicas to exactly ``0..desired-1``."""
    if desired < 0:
        raise ValueError(f"desired replicas must be >= 0, got {desired}")
    have = set(existing)
    return ScalePlan(
        start=tuple(r for r in range(desired) if r not in have),
        stop=tuple(sorted((r for r in have if r >= desired), reverse=True)),
    )


class Action(enum.StrEnum):
    START = "start"  # start the replica's processes
    STOP = "stop"  # sidecar SIGTERM (OUT_OF_SERVICE, grace, drain, deregister), then the pod
    WAIT_UP = "wait_up"  # until the replica's sidecar is ready and UP in the registry


@dataclass(frozen=True)
class Step:
    action: Action
    replica: int
    #: This WAIT_UP completes the replacement of one of the deployment's replicas.
    completes_replacement: bool = False


def replacement_order(ready: Mapping[int, bool]) -> list[int]:
    """Replicas in the order they are replaced: those not serving first (replacing them
    costs no capacity, and a fix may be what they wait for), then the serving ones;
    ascending within each group."""
    return sorted(ready, key=lambda r: (ready[r], r))


def plan_rollout(ready: Mapping[int, bool], *, surge_allowed: bool) -> list[Step]:
    """Steps of a rolling restart of the replicas in ``ready`` (replica -> serving now).

    Each replica: STOP, START, WAIT_UP. A single serving replica would leave nobody
    to answer while it restarts, so when a surge is allowed an extra replica is started
    first and stopped last (at most one replica more than asked, as Kubernetes'
    maxSurge=1).
    """
    steps: list[Step] = []
    surge = len(ready) == 1 and all(ready.values()) and surge_allowed
    extra = max(ready, default=-1) + 1
    if surge:
        steps += [Step(Action.START, extra), Step(Action.WAIT_UP, extra)]
    for replica in replacement_order(ready):
        steps += [
            Step(Action.STOP, replica),
            Step(Action.START, replica),
            Step(Action.WAIT_UP, replica, completes_replacement=True),
        ]
    if surge:
        steps.append(Step(Action.STOP, extra))
    return steps


class RegistryView(enum.Enum):
    """What the registry says of one instance, for :func:`replacement_up`."""

    UP = "UP"
    NOT_UP = "NOT_UP"  # listed with another status (STARTING, DOWN, OUT_OF_SERVICE)
    ABSENT = "ABSENT"  # not registered (yet)
    UNREACHABLE = "UNREACHABLE"  # the registry could not be read


def registry_view(status: str | None, *, reachable: bool) -> RegistryView:
    if not reachable:
        return RegistryView.UNREACHABLE
    if status is None:
        return RegistryView.ABSENT
    return RegistryView.UP if status == "UP" else RegistryView.NOT_UP


def replacement_up(*, sidecar_ready: bool, registry: RegistryView) -> bool:
    """A replacement is UP when its sidecar answers ready (its server is ready and it is not
    draining) and callers can find it: the registry lists it UP. While the registry cannot
    be read its own view is all there is, so the sidecar's readiness decides alone."""
    if not sidecar_ready:
        return False
    return registry in (RegistryView.UP, RegistryView.UNREACHABLE)
