"""What Kubernetes pods mean for deploy-control (pure): their state, and stable replica numbers.

deploy-control numbers a deployment's replicas 0..n-1 (pod id ``<deployment>-<n>``);
a Deployment's pods have random names. :func:`assign_slots` keeps each live pod in the
slot it first got, so replica 2 stays the same pod across refreshes, a deleted pod's slot
is filled by its replacement, and scaling down frees the highest slots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aimp_deploy_control.lifecycle import PodState

#: Container waiting reasons that mean "it will not come up by itself soon".
FAILING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class ObservedPod:
    """One pod as the API server last described it."""

    name: str
    #: metadata.creationTimestamp (RFC 3339, so it sorts as text).
    created: str
    node: str | None
    ip: str | None
    state: PodState
    restarts: int
    #: Why it is not running, from Kubernetes' own words (scheduler, kubelet).
    last_error: str | None
    terminating: bool


def _containers(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(status.get("containerStatuses") or [])


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _failure(status: Mapping[str, Any]) -> str | None:
    """The first container that is failing, in the kubelet's words."""
    for c in _containers(status):
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FAILING_REASONS:
            message = waiting.get("message") or ""
            last = ((c.get("lastState") or {}).get("terminated") or {}).get("exitCode")
            code = f" (last exit code {last})" if last is not None else ""
            return f"{c.get('name')}: {waiting['reason']}{code} {message}".strip()
    return None


def observe(pod: Mapping[str, Any]) -> ObservedPod:
    """An API server pod object (JSON as a dict) as deploy-control sees it."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    restarts = sum(int(c.get("restartCount") or 0) for c in _containers(status))
    terminating = meta.get("deletionTimestamp") is not None
    phase = status.get("phase")
    error: str | None = None
    if terminating:
        state = PodState.STOPPING
    elif phase in ("Failed", "Succeeded"):
        state = PodState.CRASHED
        error = f"pod {phase.lower()}: {status.get('reason') or ''} {status.get('message') or ''}"
        error = error.strip()
    elif (error := _failure(status)) is not None:
        state = PodState.CRASHED
    elif not spec.get("nodeName"):
        state = PodState.PENDING
        scheduled = _condition(status, "PodScheduled")
        if scheduled is not None and scheduled.get("status") == "False":
            error = f"not scheduled: {scheduled.get('message') or scheduled.get('reason')}"
    else:
        ready = _condition(status, "Ready")
        state = (
            PodState.RUNNING
            if ready is not None and ready.get("status") == "True"
            else PodState.STARTING
        )
    return ObservedPod(
        name=str(meta.get("name", "")),
        created=str(meta.get("creationTimestamp") or ""),
        node=spec.get("nodeName"),
        ip=status.get("podIP"),
        state=state,
        restarts=restarts,
        last_error=error,
        terminating=terminating,
    )


def assign_slots(
    previous: Mapping[int, str], pods: Sequence[ObservedPod], desired: int
) -> dict[int, str]:
    """Replica number -> pod name for replicas ``0..desired-1``.

    A live pod keeps its previous slot while that slot is wanted; free slots go to the
    unassigned live pods, oldest first. Terminating pods get no slot. Slots may stay
    empty (the pod is not created yet); pods may stay unassigned (being scaled away).
    """
    live = {p.name for p in pods if not p.terminating}
    kept: dict[int, str] = {}
    taken: set[str] = set()
    for slot, name in sorted(previous.items()):  # a pod keeps at most one slot, its lowest
        if slot < desired and name in live and name not in taken:
            kept[slot] = name
            taken.add(name)
    waiting = sorted(
        (p for p in pods if not p.terminating and p.name not in taken),
        key=lambda p: (p.created, p.name),
    )
    free = [slot for slot in range(desired) if slot not in kept]
    return {**kept, **{slot: pod.name for slot, pod in zip(free, waiting, strict=False)}}
