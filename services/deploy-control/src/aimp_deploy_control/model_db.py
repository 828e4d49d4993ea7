"""Models and their versions in deploy-control's SQL database.

A model is a name with numbered versions 1, 2, 3...; numbers are never reused, even
after a version is deleted (``models.next_version`` only grows), so "version 3" means
one file forever. The file itself lives in the model store under its SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from aimp_deploy_control.model_schema import ModelSchema
from aimp_deploy_control.store import Base, DeploymentRow


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True, nullable=False)
    next_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(
        String(63), ForeignKey("models.name", ondelete="CASCADE"), nullable=False, index=True
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    framework: Mapped[str] = mapped_column(String(32), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    size_bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    schema_json: Mapped[str] = mapped_column(Text, nullable=False)
    schema_declared: Mapped[bool] = mapped_column(Boolean, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    framework: str
    sha256: str
    size_bytes: int
    filename: str
    schema: ModelSchema
    schema_declared: bool
    created_at: datetime


@dataclass(frozen=True)
class Model:
    name: str
    created_at: datetime
    versions: list[ModelVersion]


class VersionInUse(Exception):
    def __init__(self, deployments: list[str]) -> None:
        super().__init__(", ".join(deployments))
        self.deployments = deployments


def _aware(ts: datetime) -> datetime:  # SQLite hands back naive datetimes
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _version(row: ModelVersionRow) -> ModelVersion:
    return ModelVersion(
        model=row.model,
        version=row.version,
        framework=row.framework,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        filename=row.filename,
        schema=ModelSchema.model_validate_json(row.schema_json),
        schema_declared=row.schema_declared,
        created_at=_aware(row.created_at),
    )


class ModelDB:
    """Synchronous (run it in a thread from async code); each call is one transaction.
    Its tables are created with the deployments' (same metadata)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    def add_version(
        self,
        model: str,
        *,
        framework: str,
        sha256: str,
        size_bytes: int,
        filename: str,
        schema: ModelSchema,
        schema_declared: bool,
    ) -> ModelVersion:
        """Store the next version of ``model`` (creating the model on its first version)."""
        for _attempt in range(5):  # a concurrent writer took the number: take the next
            try:
                with self._session.begin() as session:
                    now = datetime.now(UTC)
                    row = session.scalar(select(ModelRow).where(ModelRow.name == model))
                    if row is None:
                        row = ModelRow(name=model, next_version=1, created_at=now)
                        session.add(row)
                        session.flush()
                    number = row.next_version
                    row.next_version = number + 1
                    version = ModelVersionRow(
                        model=model,
                        version=number,
                        framework=framework,
                        sha256=sha256,
                        size_bytes=size_bytes,
                        filename=filename,
                        schema_json=schema.model_dump_json(),
                        schema_declared=schema_declared,
                        created_at=now,
                    )
                    session.add(version)
                return _version(version)
            except IntegrityError:
                continue
        raise RuntimeError(f"could not number a new version of {model!r} after 5 tries")

    def names(self) -> list[str]:
        with self._session() as session:
            return list(session.scalars(select(ModelRow.name).order_by(ModelRow.name)))

    def get(self, model: str) -> Model | None:
        with self._session() as session:
            row = session.scalar(select(ModelRow).where(ModelRow.name == model))
            if row is None:
                return None
            versions = session.scalars(
                select(ModelVersionRow)
                .where(ModelVersionRow.model == model)
                .order_by(ModelVersionRow.version)
            )
            return Model(row.name, _aware(row.created_at), [_version(v) for v in versions])

    def version(self, model: str, version: int | None) -> ModelVersion | None:
        """One version, or the highest one when ``version`` is None."""
        with self._session() as session:
            query = select(ModelVersionRow).where(ModelVersionRow.model == model)
            if version is None:
                query = query.order_by(ModelVersionRow.version.desc()).limit(1)
            else:
                query = query.where(ModelVersionRow.version == version)
            row = session.scalar(query)
            return None if row is None else _version(row)

    def users(self, model: str, version: int) -> list[str]:
        """Deployments that serve this version."""
        with self._session() as session:
            return list(
                session.scalars(
                    select(DeploymentRow.name)
                    .where(DeploymentRow.model == model, DeploymentRow.model_version == version)
                    .order_by(DeploymentRow.name)
                )
            )

    def delete_version(self, model: str, version: int) -> tuple[ModelVersion, bool] | None:
        """Forget a version no deployment serves: (it, whether another version shares its
        file); None when it does not exist, VersionInUse when a deployment serves it."""
        with self._session.begin() as session:
            row = session.scalar(
                select(ModelVersionRow).where(
                    ModelVersionRow.model == model, ModelVersionRow.version == version
                )
            )
            if row is None:
                return None
            users = list(
                session.scalars(
                    select(DeploymentRow.name).where(
                        DeploymentRow.model == model, DeploymentRow.model_version == version
                    )
                )
            )
            if users:
                raise VersionInUse(sorted(users))
            gone = _version(row)
            session.delete(row)
            session.flush()
            shared = session.scalar(
                select(func.count())
                .select_from(ModelVersionRow)
                .where(ModelVersionRow.sha256 == gone.sha256)
            )
            return gone, bool(shared)
