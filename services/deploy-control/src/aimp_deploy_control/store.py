"""Deployments in SQL (SQLite under AIMP_HOME by default, PostgreSQL when configured)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, Engine, Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    model_file: Mapped[str] = mapped_column(String(4096), nullable=False)
    framework: Mapped[str] = mapped_column(String(32), nullable=False)
    replicas: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


@dataclass(frozen=True)
class Deployment:
    name: str
    model_file: str
    framework: str
    replicas: int
    created_at: datetime
    updated_at: datetime

    def spec(self) -> dict[str, object]:
        """The fields a client chooses (compared to detect a conflicting re-deploy)."""
        return {
            "model_file": self.model_file,
            "framework": self.framework,
            "replicas": self.replicas,
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
        Base.metadata.create_all(self.engine)

    def get(self, name: str) -> Deployment | None:
        with self._session() as session:
            row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            return None if row is None else _public(row)

    def list(self) -> list[Deployment]:
        with self._session() as session:
            rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.name))
            return [_public(r) for r in rows]

    def add(self, name: str, model_file: str, framework: str, replicas: int) -> Deployment:
        now = datetime.now(UTC)
        row = DeploymentRow(
            name=name,
            model_file=model_file,
            framework=framework,
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

    def delete(self, name: str) -> bool:
        with self._session.begin() as session:
            row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            if row is None:
                return False
            session.delete(row)
            return True
