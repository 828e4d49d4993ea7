"""A replica start's cold-start phases, as an explicit sequence of marks (pure).

A start passes four marks in this order, each an instant on a monotonic clock:

1. ``requested``: the backend was asked to start the replica (spawn requested);
2. ``process_started``: its inference server process exists;
3. ``model_loaded``: the server answers ready (``/v2/health/ready`` and its model's
   ``/v2/models/{name}/ready``), so the model is loaded;
4. ``registered``: its sidecar is UP in the registry, so callers can find it.

The phases are the gaps between them. Whoever observes the marks (local_backend.py)
polls, so each mark is late by up to one probe interval; the durations are what the
observer could resolve. The clock is passed in, never read here.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, replace
from datetime import datetime


class Mark(enum.StrEnum):
    REQUESTED = "requested"
    PROCESS_STARTED = "process_started"
    MODEL_LOADED = "model_loaded"
    REGISTERED = "registered"


#: The order every start passes the marks in.
ORDER: tuple[Mark, ...] = (
    Mark.REQUESTED,
    Mark.PROCESS_STARTED,
    Mark.MODEL_LOADED,
    Mark.REGISTERED,
)


class ColdStartState(enum.StrEnum):
    IN_PROGRESS = "in_progress"  # the next mark is still awaited
    DONE = "done"  # registered: every phase is known
    ABANDONED = "abandoned"  # stopped, crashed or timed out before it registered


class IllegalMark(RuntimeError):
    """A mark out of order, twice, backwards in time, or after the start ended (a bug in
    the observer)."""


@dataclass(frozen=True)
class ColdStartMarks:
    """What one start has passed so far: instants in seconds on a monotonic clock."""

    #: Wall-clock time (UTC) of ``requested``, so people can line it up with other events.
    requested_at: datetime
    times: tuple[float, ...]
    state: ColdStartState = ColdStartState.IN_PROGRESS
    #: Why an abandoned start ended ("pod stopped", "server crashed", ...).
    reason: str | None = None

    @property
    def reached(self) -> Mark:
        """The last mark passed."""
        return ORDER[len(self.times) - 1]

    @property
    def awaited(self) -> Mark | None:
        """The next mark, or None when the start has ended."""
        if self.state is not ColdStartState.IN_PROGRESS:
            return None
        return ORDER[len(self.times)]


def begin(now: float, wall: datetime) -> ColdStartMarks:
    """A start requested at ``now`` (monotonic seconds) and ``wall`` (UTC)."""
    return ColdStartMarks(requested_at=wall, times=(now,))


def record(marks: ColdStartMarks, mark: Mark, now: float) -> ColdStartMarks:
    """``marks`` with ``mark`` passed at ``now``; IllegalMark unless it is the next one."""
    awaited = marks.awaited
    if awaited is None:
        raise IllegalMark(
            f"cannot record {mark}: the cold start already ended ({marks.state}); begin a "
            "new one for a new start"
        )
    if mark is not awaited:
        raise IllegalMark(
            f"cannot record {mark} after {marks.reached}: the next mark is {awaited} "
            f"(order: {', '.join(ORDER)})"
        )
    if now < marks.times[-1]:
        raise IllegalMark(
            f"cannot record {mark} at {now:.6f}: earlier than {marks.reached} at "
            f"{marks.times[-1]:.6f} (use a monotonic clock)"
        )
    done = mark is ORDER[-1]
    return replace(
        marks,
        times=(*marks.times, now),
        state=ColdStartState.DONE if done else ColdStartState.IN_PROGRESS,
    )


def abandon(marks: ColdStartMarks, reason: str) -> ColdStartMarks:
    """``marks`` ended before registering (a finished start stays as it is)."""
    if marks.state is not ColdStartState.IN_PROGRESS:
        return marks
    return replace(marks, state=ColdStartState.ABANDONED, reason=reason)


@dataclass(frozen=True)
class ColdStart:
    """One start's phases in milliseconds; a phase not (yet) passed is None."""

    state: ColdStartState
    requested_at: datetime
    #: requested -> process started (forking the server).
    process_start_ms: float | None
    #: process started -> the server answers ready with its model loaded.
    model_load_ms: float | None
    #: model loaded -> the sidecar is UP in the registry.
    registration_ms: float | None
    #: requested -> registered (the sum of the three).
    total_ms: float | None
    reason: str | None = None


def phases(marks: ColdStartMarks) -> ColdStart:
    """The durations between consecutive marks passed so far, in ms."""
    gaps = [
        round((later - earlier) * 1000.0, 3) for earlier, later in itertools.pairwise(marks.times)
    ]
    padded: list[float | None] = [*gaps, *([None] * (len(ORDER) - 1 - len(gaps)))]
    total = (
        round((marks.times[-1] - marks.times[0]) * 1000.0, 3)
        if marks.state is ColdStartState.DONE
        else None
    )
    return ColdStart(
        state=marks.state,
        requested_at=marks.requested_at,
        process_start_ms=padded[0],
        model_load_ms=padded[1],
        registration_ms=padded[2],
        total_ms=total,
        reason=marks.reason,
    )
