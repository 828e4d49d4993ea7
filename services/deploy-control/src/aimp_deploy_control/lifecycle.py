"""A pod's life as an explicit state machine, and the restart backoff (pure)."""

from __future__ import annotations

import enum


class PodState(enum.StrEnum):
    PENDING = "PENDING"  # known, no process started yet
    STARTING = "STARTING"  # processes started, not answering ready yet
    RUNNING = "RUNNING"  # every process alive and the sidecar ready
    CRASHED = "CRASHED"  # a process exited on its own; a restart is scheduled
    STOPPING = "STOPPING"  # being stopped on purpose
    STOPPED = "STOPPED"  # every process gone; final


ALLOWED: dict[PodState, frozenset[PodState]] = {
    PodState.PENDING: frozenset({PodState.STARTING, PodState.STOPPING}),
    PodState.STARTING: frozenset({PodState.RUNNING, PodState.CRASHED, PodState.STOPPING}),
    PodState.RUNNING: frozenset({PodState.CRASHED, PodState.STOPPING}),
    PodState.CRASHED: frozenset({PodState.STARTING, PodState.STOPPING}),
    PodState.STOPPING: frozenset({PodState.STOPPED}),
    PodState.STOPPED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A state change the pod lifecycle does not allow (a bug in the caller)."""

    def __init__(self, pod_id: str, current: PodState, target: PodState) -> None:
        allowed = ", ".join(sorted(ALLOWED[current])) or "nothing (it is final)"
        super().__init__(
            f"pod {pod_id}: cannot go from {current} to {target}; from {current} it may go "
            f"to {allowed}"
        )
        self.current = current
        self.target = target


def transition(pod_id: str, current: PodState, target: PodState) -> PodState:
    """``target`` if the lifecycle allows it from ``current``, else IllegalTransition."""
    if target not in ALLOWED[current]:
        raise IllegalTransition(pod_id, current, target)
    return target


def restart_delay_s(crashes: int, *, initial_s: float, max_s: float) -> float:
    """Delay before restarting after the ``crashes``-th crash in a row (1-based)."""
    if crashes <= 0:
        return 0.0
    return float(min(max_s, initial_s * 2 ** min(crashes - 1, 30)))
