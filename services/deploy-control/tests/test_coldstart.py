"""Cold-start phase computation (pure): marks in order, durations by phase, bad marks refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_deploy_control.coldstart import (
    ORDER,
    ColdStartState,
    IllegalMark,
    Mark,
    abandon,
    begin,
    phases,
    record,
)

WALL = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_phases_of_a_finished_start() -> None:
    """Each phase is the gap between consecutive marks, and the total spans them all."""
    marks = begin(100.0, WALL)
    marks = record(marks, Mark.PROCESS_STARTED, 100.004)
    marks = record(marks, Mark.MODEL_LOADED, 102.754)
    marks = record(marks, Mark.REGISTERED, 103.254)
    got = phases(marks)
    assert got.state is ColdStartState.DONE
    assert got.requested_at == WALL
    assert got.process_start_ms == pytest.approx(4.0)
    assert got.model_load_ms == pytest.approx(2750.0)
    assert got.registration_ms == pytest.approx(500.0)
    assert got.total_ms == pytest.approx(3254.0)


def test_a_start_in_progress_shows_only_the_phases_passed() -> None:
    """Phases not passed yet are None, and there is no total before registration."""
    marks = record(begin(5.0, WALL), Mark.PROCESS_STARTED, 5.5)
    got = phases(marks)
    assert got.state is ColdStartState.IN_PROGRESS
    assert (got.process_start_ms, got.model_load_ms, got.registration_ms) == (500.0, None, None)
    assert got.total_ms is None
    assert marks.awaited is Mark.MODEL_LOADED


def test_marks_out_of_order_are_refused_naming_the_next_one() -> None:
    """Skipping a mark, repeating one, or going back in time raises IllegalMark."""
    marks = begin(1.0, WALL)
    with pytest.raises(IllegalMark, match="the next mark is process_started"):
        record(marks, Mark.MODEL_LOADED, 2.0)
    with pytest.raises(IllegalMark, match="the next mark is process_started"):
        record(marks, Mark.REQUESTED, 2.0)
    with pytest.raises(IllegalMark, match="earlier than requested"):
        record(marks, Mark.PROCESS_STARTED, 0.5)


def test_an_ended_start_takes_no_more_marks() -> None:
    """After registration or abandonment no mark is accepted; abandoning keeps a done start."""
    done = begin(0.0, WALL)
    for i, mark in enumerate(ORDER[1:], start=1):
        done = record(done, mark, float(i))
    with pytest.raises(IllegalMark, match="already ended"):
        record(done, Mark.REGISTERED, 9.0)
    assert abandon(done, "stopped") == done
    stopped = abandon(record(begin(0.0, WALL), Mark.PROCESS_STARTED, 0.1), "the pod was stopped")
    assert stopped.awaited is None
    with pytest.raises(IllegalMark, match="abandoned"):
        record(stopped, Mark.MODEL_LOADED, 1.0)
    got = phases(stopped)
    assert got.state is ColdStartState.ABANDONED and got.reason == "the pod was stopped"
    assert got.process_start_ms == pytest.approx(100.0) and got.total_ms is None


@given(
    start=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    gaps=st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), min_size=3, max_size=3),
)
def test_phases_add_up_to_the_total(start: float, gaps: list[float]) -> None:
    """For any non-decreasing marks, the phases are non-negative and sum to the total."""
    marks, now = begin(start, WALL), start
    for mark, gap in zip(ORDER[1:], gaps, strict=True):
        now += gap
        marks = record(marks, mark, now)
    got = phases(marks)
    parts = [got.process_start_ms, got.model_load_ms, got.registration_ms]
    assert all(p is not None and p >= 0 for p in parts)
    assert got.total_ms is not None
    assert sum(p for p in parts if p is not None) == pytest.approx(got.total_ms, abs=0.01)
