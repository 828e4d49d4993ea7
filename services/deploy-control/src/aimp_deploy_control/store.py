"""Deployments in SQL (SQLite under AIMP_HOME by default, PostgreSQL when configured)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, Engine, Integer, String, inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from aimp_deploy_control import revision_store as rs
from aimp_deploy_control.revision_spec import Serving
from aimp_deploy_control.revision_store import Revision, RevisionFields
from aimp_deploy_control.revisions import RevisionState
from aimp_deploy_control.store_base import Base as Base  # re-exported: model_db's tables
from aimp_deploy_control.store_base import aware

log = logging.getLogger(__name__)

#: (``list`` is also a method name below.)
Revisions = list[Revision]

#: Columns added after the first release: (name, DDL). A database written by an older
#: deploy-control gets them at start, with defaults that keep its rows' meaning.
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("runtime", "VARCHAR(16) NOT NULL DEFAULT 'triton'"),
    # A deployment of a registered model version (model_file is then '').
    ("model", "VARCHAR(63)"),
    ("model_version", "INTEGER"),
)


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    model_file: Mapped[str] = mapped_column(String(4096), nullable=False)
    framework: Mapped[str] = mapped_column(String(32), nullable=False)
    runtime: Mapped[str] = mapped_column(String(16), nullable=False, server_default="triton")
    #: Set when it serves a registered model version; model_file is '' then.
    model: Mapped[str | None] = mapped_column(String(63), nullable=True)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    replicas: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


@dataclass(frozen=True)
class Deployment:
    name: str
    model_file: str
    framework: str
    runtime: str
    replicas: int
    created_at: datetime
    updated_at: datetime
    #: The registered model version it serves (None, None for a plain model_file).
    model: str | None = None
    model_version: int | None = None

    def spec(self) -> dict[str, object]:
        """What the deployment serves and how (a re-deploy that differs here conflicts);
        replicas are not part of it: they change by scaling after the first deploy."""
        return {
            "model_file": self.model_file,
            "runtime": self.runtime,
            "framework": self.framework,
            "model": self.model,
            "model_version": self.model_version,
        }


class NameTaken(Exception):
    """Another writer stored a deployment with this name first."""


def _public(row: DeploymentRow) -> Deployment:
    return Deployment(
        row.name,
        row.model_file,
        row.framework,
        row.runtime,
        row.replicas,
        aware(row.created_at),
        aware(row.updated_at),
        row.model,
        row.model_version,
    )


class DeploymentStore:
    """Synchronous (run it in a thread from async code); each call is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    def create_schema(self) -> None:
        """Create the tables, add columns a database from an older version lacks, and give
        every deployment stored before revisions existed its ``r1``."""
        Base.metadata.create_all(self.engine)
        for table, added in (
            (DeploymentRow.__tablename__, ADDED_COLUMNS),
            (rs.RevisionRow.__tablename__, rs.ADDED_COLUMNS),
        ):
            have = {c["name"] for c in inspect(self.engine).get_columns(table)}
            with self.engine.begin() as conn:
                for name, ddl in added:
                    if name not in have:
                        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))
                        log.info(
                            "added a column to an older database",
                            extra={"table": table, "column": name},
                        )
        with self._session.begin() as session:
            with_revisions = set(session.scalars(select(rs.RevisionRow.deployment).distinct()))
            for row in session.scalars(select(DeploymentRow)):
                if row.name not in with_revisions:
                    session.add(rs.new_row(row.name, 1, _fields(row), state=_serving, first=True))
                    log.info("gave an older deployment its r1", extra={"deployment": row.name})

    def get(self, name: str) -> Deployment | None:
        with self._session() as session:
            row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            return None if row is None else _public(row)

    def list(self) -> list[Deployment]:
        with self._session() as session:
            rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.name))
            return [_public(r) for r in rows]

    def add(
        self,
        name: str,
        model_file: str,
        framework: str,
        runtime: str,
        replicas: int,
        model: tuple[str, int] | None = None,
        resources: dict[str, object] | None = None,
        serving: Serving | None = None,
    ) -> Deployment:
        """Store a new deployment and its r1 (100% of the traffic, STARTING); ``model`` is
        the (name, version) it serves, if any."""
        now = datetime.now(UTC)
        row = DeploymentRow(
            name=name,
            model_file=model_file,
            framework=framework,
            runtime=runtime,
            model=model[0] if model else None,
            model_version=model[1] if model else None,
            replicas=replicas,
            created_at=now,
            updated_at=now,
        )
        first = RevisionFields(
            model_file, framework, runtime, model, replicas, resources, serving or Serving()
        )
        try:
            with self._session.begin() as session:
                session.add(row)
                session.flush()
                rs.delete_all(session, name)  # left by a deployment deleted mid-way
                session.add(rs.new_row(name, 1, first, state=RevisionState.STARTING, first=True))
        except IntegrityError:
            raise NameTaken(name) from None
        return _public(row)

    def set_replicas(self, name: str, replicas: int) -> Deployment | None:
        """Store a new replica count; None when the deployment is gone."""
        with self._session.begin() as session:
            session.execute(
                update(DeploymentRow)
                .where(DeploymentRow.name == name)
                .values(replicas=replicas, updated_at=datetime.now(UTC))
            )
            row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            return None if row is None else _public(row)

    def delete(self, name: str) -> bool:
        with self._session.begin() as session:
            rs.delete_all(session, name)
            row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            if row is None:
                return False
            session.delete(row)
            return True

    # -- revisions ----------------------------------------------------------------------------

    def revisions(self, name: str) -> Revisions:
        with self._session() as session:
            return [rs.public(r) for r in rs.rows_of(session, name)]

    def add_revision(self, name: str, fields: RevisionFields) -> Revision:
        """The deployment's next revision (STARTING, 0% of the traffic)."""
        with self._session.begin() as session:
            return rs.public(rs.add_next(session, name, fields))

    def change_revisions(
        self,
        name: str,
        *,
        states: Mapping[str, RevisionState] | None = None,
        traffic: Mapping[str, int] | None = None,
        full_seq: Mapping[str, int] | None = None,
        replicas: Mapping[str, int] | None = None,
    ) -> Revisions:
        """Change revisions by name in one transaction; the deployment's own row follows
        its primary revision (the one with the most traffic), which older readers see."""
        with self._session.begin() as session:
            rows = rs.apply_changes(
                session, name, states=states, traffic=traffic, full_seq=full_seq, replicas=replicas
            )
            if rows:
                _follow_primary(session, name, max(rows, key=lambda r: (r.traffic, r.number)))
            return [rs.public(r) for r in rows]


_serving = RevisionState.SERVING


def _fields(row: DeploymentRow) -> RevisionFields:
    model = (row.model, row.model_version) if row.model and row.model_version else None
    return RevisionFields(row.model_file, row.framework, row.runtime, model, row.replicas)


def _follow_primary(session: Session, name: str, primary: rs.RevisionRow) -> None:
    session.execute(
        update(DeploymentRow)
        .where(DeploymentRow.name == name)
        .values(
            model_file=primary.model_file,
            framework=primary.framework,
            runtime=primary.runtime,
            model=primary.model,
            model_version=primary.model_version,
            replicas=primary.replicas,
            updated_at=datetime.now(UTC),
        )
    )
