"""Deployments in SQL (SQLite under AIMP_HOME by default, PostgreSQL when configured)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, Engine, Integer, String, inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

log = logging.getLogger(__name__)

#: Columns added after the first release: (name, DDL). A database written by an older
#: deploy-control gets them at start, with defaults that keep its rows' meaning.
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (("runtime", "VARCHAR(16) NOT NULL DEFAULT 'triton'"),)


class Base(DeclarativeBase):
    pass


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    model_file: Mapped[str] = mapped_column(String(4096), nullable=False)
    framework: Mapped[str] = mapped_column(String(32), nullable=False)
    runtime: Mapped[str] = mapped_column(String(16), nullable=False, server_default="triton")
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

    def spec(self) -> dict[str, object]:
        """What the deployment serves and how (a re-deploy that differs here conflicts);
        replicas are not part of it: they change by scaling after the first deploy."""
        return {
            "model_file": self.model_file,
            "runtime": self.runtime,
            "framework": self.framework,
        }


class NameTaken(Exception):
    """Another writer stored a deployment with this name first."""


def _public(row: DeploymentRow) -> Deployment:
    def aware(ts: datetime) -> datetime:  # SQLite hands back naive datetimes
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)

    return Deployment(
        row.name,
        row.model_file,
        row.framework,
        row.runtime,
        row.replicas,
        aware(row.created_at),
        aware(row.updated_at),
    )


class DeploymentStore:
    """Synchronous (run it in a thread from async code); each call is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    def create_schema(self) -> None:
        """Create the tables, and add columns a database from an older version lacks."""
        Base.metadata.create_all(self.engine)
        have = {c["name"] for c in inspect(self.engine).get_columns(DeploymentRow.__tablename__)}
        with self.engine.begin() as conn:
            for name, ddl in ADDED_COLUMNS:
                if name not in have:
                    conn.execute(text(f"ALTER TABLE deployments ADD COLUMN {name} {ddl}"))
                    log.info("added a column to an older database", extra={"column": name})

    def get(self, name: str) -> Deployment | None:
        with self._session() as session:
            row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            return None if row is None else _public(row)

    def list(self) -> list[Deployment]:
        with self._session() as session:
            rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.name))
            return [_public(r) for r in rows]

    def add(
        self, name: str, model_file: str, framework: str, runtime: str, replicas: int
    ) -> Deployment:
        now = datetime.now(UTC)
        row = DeploymentRow(
            name=name,
            model_file=model_file,
            framework=framework,
            runtime=runtime,
            replicas=replicas,
            created_at=now,
            updated_at=now,
        )
        try:
            with self._session.begin() as session:
                session.add(row)
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
            row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            if row is None:
                return False
            session.delete(row)
            return True
