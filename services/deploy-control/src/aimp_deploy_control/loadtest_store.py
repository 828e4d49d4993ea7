"""Load tests in SQL (the ``loadtests`` table in deploy-control's database).

One row per load test; a deployment's latest is what ``GET .../loadtest`` shows. The
steps measured so far and the progress are written after each step, so a reader sees
a running test move and a finished one survives a restart of deploy-control. A row
left RUNNING by a deploy-control that stopped is marked FAILED at the next start.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, Engine, Float, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from aimp_deploy_control.loadtest import LoadTestState, Recommendation, Step, transition
from aimp_deploy_control.store_base import Base, aware


class LoadTestRow(Base):
    __tablename__ = "loadtests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment: Mapped[str] = mapped_column(String(63), nullable=False, index=True)
    pod_id: Mapped[str] = mapped_column(String(255), nullable=False)
    revision: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    latency_target_ms: Mapped[float] = mapped_column(Float, nullable=False)
    max_rate_rps: Mapped[float] = mapped_column(Float, nullable=False)
    step_duration_s: Mapped[float] = mapped_column(Float, nullable=False)
    #: The step under way (1-based; 0 before the first) and its rate.
    current_step: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    current_rate_rps: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: The measured steps, each a loadtest.Step as JSON with its verdict.
    steps_json: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    #: loadtest.Recommendation as JSON once done.
    result_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class StepRecord:
    step: Step
    passed: bool
    reason: str


@dataclass(frozen=True)
class LoadTest:
    id: int
    deployment: str
    pod_id: str
    revision: str
    state: LoadTestState
    latency_target_ms: float
    max_rate_rps: float
    step_duration_s: float
    current_step: int
    current_rate_rps: float | None
    steps: list[StepRecord]
    result: Recommendation | None
    stop_reason: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None


def _public(row: LoadTestRow) -> LoadTest:
    steps = [
        StepRecord(Step(**s["step"]), bool(s["passed"]), str(s["reason"]))
        for s in json.loads(row.steps_json)
    ]
    result = Recommendation(**json.loads(row.result_json)) if row.result_json else None
    return LoadTest(
        row.id,
        row.deployment,
        row.pod_id,
        row.revision,
        LoadTestState(row.state),
        row.latency_target_ms,
        row.max_rate_rps,
        row.step_duration_s,
        row.current_step,
        row.current_rate_rps,
        steps,
        result,
        row.stop_reason,
        row.error,
        aware(row.started_at),
        aware(row.finished_at) if row.finished_at else None,
    )


class LoadTestStore:
    """Synchronous (run it in a thread from async code); each call is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine, tables=[LoadTestRow.__table__])  # type: ignore[list-item]

    def interrupt_running(self, reason: str) -> int:
        """Mark every RUNNING row FAILED with ``reason`` (at start: nothing runs them now)."""
        with self._session.begin() as session:
            result = session.execute(
                update(LoadTestRow)
                .where(LoadTestRow.state == LoadTestState.RUNNING.value)
                .values(state=LoadTestState.FAILED.value, error=reason, finished_at=_now())
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def add(
        self,
        deployment: str,
        pod_id: str,
        revision: str,
        *,
        latency_target_ms: float,
        max_rate_rps: float,
        step_duration_s: float,
    ) -> LoadTest:
        row = LoadTestRow(
            deployment=deployment,
            pod_id=pod_id,
            revision=revision,
            state=LoadTestState.RUNNING.value,
            latency_target_ms=latency_target_ms,
            max_rate_rps=max_rate_rps,
            step_duration_s=step_duration_s,
            current_step=0,
            steps_json="[]",
            started_at=_now(),
        )
        with self._session.begin() as session:
            session.add(row)
        return _public(row)

    def latest(self, deployment: str, since: datetime) -> LoadTest | None:
        """The deployment's latest load test started after ``since`` (its creation: a
        deleted deployment's tests do not show for a new one of the same name)."""
        with self._session() as session:
            row = session.scalar(
                select(LoadTestRow)
                .where(LoadTestRow.deployment == deployment, LoadTestRow.started_at >= since)
                .order_by(LoadTestRow.id.desc())
                .limit(1)
            )
            return None if row is None else _public(row)

    def progress(
        self, test_id: int, current_step: int, rate_rps: float, steps: list[StepRecord]
    ) -> None:
        """The step now under way and the steps measured before it."""
        with self._session.begin() as session:
            session.execute(
                update(LoadTestRow)
                .where(LoadTestRow.id == test_id)
                .values(
                    current_step=current_step,
                    current_rate_rps=rate_rps,
                    steps_json=_steps_json(steps),
                )
            )

    def finish(
        self,
        test_id: int,
        state: LoadTestState,
        *,
        steps: list[StepRecord],
        result: Recommendation | None = None,
        stop_reason: str | None = None,
        error: str | None = None,
    ) -> LoadTest:
        with self._session.begin() as session:
            row = session.get_one(LoadTestRow, test_id)
            row.state = transition(LoadTestState(row.state), state).value
            row.steps_json = _steps_json(steps)
            row.result_json = json.dumps(asdict(result)) if result else None
            row.stop_reason = stop_reason
            row.error = error
            row.current_rate_rps = None
            row.finished_at = _now()
            return _public(row)


def _steps_json(steps: list[StepRecord]) -> str:
    return json.dumps(
        [{"step": asdict(s.step), "passed": s.passed, "reason": s.reason} for s in steps]
    )


def _now() -> datetime:
    return datetime.now(UTC)
