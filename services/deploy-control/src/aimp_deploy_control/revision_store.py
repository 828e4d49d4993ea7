"""A deployment's revisions in SQL (the ``revisions`` table beside ``deployments``).

Each revision keeps what it serves and how (model, runtime, resources, replicas), its
lifecycle state (revisions.py), its share of the traffic and when it last had all of
it (for rollbacks). A database from before revisions gets an ``r1`` per deployment,
copied from the deployment's row, holding 100% of the traffic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from aimp_deploy_control.revision_spec import Serving
from aimp_deploy_control.revisions import FULL, RevisionState, revision_name
from aimp_deploy_control.store_base import Base, aware


class RevisionRow(Base):
    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("deployment", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment: Mapped[str] = mapped_column(String(63), nullable=False, index=True)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    model_file: Mapped[str] = mapped_column(String(4096), nullable=False)
    framework: Mapped[str] = mapped_column(String(32), nullable=False)
    runtime: Mapped[str] = mapped_column(String(16), nullable=False)
    model: Mapped[str | None] = mapped_column(String(63), nullable=True)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    replicas: Mapped[int] = mapped_column(Integer, nullable=False)
    #: The ``resources`` block as JSON (resources.ResourcesSpec); NULL: none asked for.
    resources_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Concurrency, scale bounds and environment as JSON (revision_spec.Serving); NULL
    #: (a revision stored before they existed): the defaults.
    serving_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    traffic: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    full_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


@dataclass(frozen=True)
class Revision:
    deployment: str
    number: int
    model_file: str
    framework: str
    runtime: str
    model: str | None
    model_version: int | None
    replicas: int
    resources: dict[str, Any] | None
    state: RevisionState
    traffic: int
    full_seq: int
    created_at: datetime
    updated_at: datetime
    serving: Serving = field(default_factory=Serving)

    @property
    def name(self) -> str:
        return revision_name(self.number)


@dataclass(frozen=True)
class RevisionFields:
    """What a new revision serves and how."""

    model_file: str
    framework: str
    runtime: str
    model: tuple[str, int] | None
    replicas: int
    resources: dict[str, Any] | None = None
    serving: Serving = field(default_factory=Serving)


#: Columns added to ``revisions`` after it first shipped: (name, DDL), added at start.
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (("serving_json", "TEXT"),)


def public(row: RevisionRow) -> Revision:
    return Revision(
        row.deployment,
        row.number,
        row.model_file,
        row.framework,
        row.runtime,
        row.model,
        row.model_version,
        row.replicas,
        json.loads(row.resources_json) if row.resources_json else None,
        RevisionState(row.state),
        row.traffic,
        row.full_seq,
        aware(row.created_at),
        aware(row.updated_at),
        Serving.from_json(json.loads(row.serving_json) if row.serving_json else None),
    )


def new_row(
    deployment: str, number: int, f: RevisionFields, *, state: RevisionState, first: bool
) -> RevisionRow:
    now = datetime.now(UTC)
    return RevisionRow(
        deployment=deployment,
        number=number,
        model_file=f.model_file,
        framework=f.framework,
        runtime=f.runtime,
        model=f.model[0] if f.model else None,
        model_version=f.model[1] if f.model else None,
        replicas=f.replicas,
        resources_json=json.dumps(f.resources, sort_keys=True) if f.resources else None,
        serving_json=json.dumps(f.serving.as_json(), sort_keys=True),
        state=state.value,
        traffic=FULL if first else 0,
        full_seq=1 if first else 0,
        created_at=now,
        updated_at=now,
    )


def rows_of(session: Session, deployment: str) -> list[RevisionRow]:
    return list(
        session.scalars(
            select(RevisionRow)
            .where(RevisionRow.deployment == deployment)
            .order_by(RevisionRow.number)
        )
    )


def add_next(session: Session, deployment: str, f: RevisionFields) -> RevisionRow:
    """A new revision numbered after the highest one (STARTING, no traffic)."""
    numbers = [r.number for r in rows_of(session, deployment)]
    row = new_row(
        deployment, max(numbers, default=0) + 1, f, state=RevisionState.STARTING, first=False
    )
    session.add(row)
    return row


def apply_changes(
    session: Session,
    deployment: str,
    *,
    states: Mapping[str, RevisionState] | None = None,
    traffic: Mapping[str, int] | None = None,
    full_seq: Mapping[str, int] | None = None,
    replicas: Mapping[str, int] | None = None,
) -> list[RevisionRow]:
    """Change revisions by name, all in the caller's transaction."""
    now = datetime.now(UTC)
    rows = rows_of(session, deployment)
    for row in rows:
        name = revision_name(row.number)
        changed = False
        for column, values in (
            ("traffic", traffic),
            ("full_seq", full_seq),
            ("replicas", replicas),
        ):
            if values is not None and name in values:
                setattr(row, column, values[name])
                changed = True
        if states is not None and name in states:
            row.state = states[name].value
            changed = True
        if changed:
            row.updated_at = now
    return rows


def delete_all(session: Session, deployment: str) -> None:
    session.execute(delete(RevisionRow).where(RevisionRow.deployment == deployment))
