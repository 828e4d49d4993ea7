"""The config center's SQL store: every change is a new numbered version of the whole configuration.

Each row of ``config_versions`` holds the complete configuration after one
change (so loading, diffing and rolling back never replay anything), plus
who made the change, when, what it touched and why. Versions are numbered
1, 2, 3... across all gateways sharing the database; two writers racing for
the same number meet the primary key, and the loser re-reads and tries again
(or gets :class:`StaleVersion` when it asked for a specific base version).

Synchronous, like :class:`aimp_gateway.store.Store`: async callers run these
methods in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, Integer, String, Text, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

#: Racing writers re-read and retry this often before giving up (each race means
#: another version was just stored, so this is only reached under a write storm).
MAX_WRITE_ATTEMPTS = 10


class ConfigBase(DeclarativeBase):
    pass


class ConfigVersionRow(ConfigBase):
    __tablename__ = "config_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    author: Mapped[str] = mapped_column(String(255), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str] = mapped_column(String(255), nullable=False)
    comment: Mapped[str] = mapped_column(Text, nullable=False, default="")
    document: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


@dataclass(frozen=True)
class VersionInfo:
    """What a version records about its change."""

    version: int
    created_at: datetime
    author: str
    action: str
    target: str
    comment: str


@dataclass(frozen=True)
class StoredVersion:
    """A version with the whole configuration (JSON form) it holds."""

    info: VersionInfo
    document: dict[str, Any]

    @property
    def version(self) -> int:
        return self.info.version


@dataclass(frozen=True)
class Change:
    """Who changes what and why; ``expected`` is the version the change was based on (If-Match)."""

    author: str
    action: str
    target: str
    comment: str = ""
    expected: int | None = None


class StaleVersion(Exception):
    """The configuration moved on since the version the caller based its change on."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"expected version {expected}, the newest is {current}")
        self.expected = expected
        self.current = current


class WriteContention(Exception):
    """Other writers kept storing versions first; the change was not stored."""


#: The document of version 0: nothing configured.
EMPTY_DOCUMENT: dict[str, Any] = {"services": {}, "routes": []}


def _info(row: ConfigVersionRow) -> VersionInfo:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return VersionInfo(row.version, created, row.author, row.action, row.target, row.comment)


def _stored(row: ConfigVersionRow) -> StoredVersion:
    return StoredVersion(_info(row), dict(row.document))


class ConfigStore:
    """Versions of the whole configuration in the gateway's SQL database."""

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self._now = now or (lambda: datetime.now(UTC))

    def create_tables(self) -> None:
        ConfigBase.metadata.create_all(self.engine)

    def head(self) -> int:
        """The newest version's number (0 when nothing was ever stored)."""
        with Session(self.engine) as s:
            return int(s.scalar(select(func.max(ConfigVersionRow.version))) or 0)

    def latest(self) -> StoredVersion:
        """The newest version (version 0 with an empty document when there is none)."""
        with Session(self.engine) as s:
            row = s.scalar(
                select(ConfigVersionRow).order_by(ConfigVersionRow.version.desc()).limit(1)
            )
            if row is None:
                return StoredVersion(
                    VersionInfo(0, datetime.fromtimestamp(0, UTC), "", "", "", ""),
                    dict(EMPTY_DOCUMENT),
                )
            return _stored(row)

    def get(self, version: int) -> StoredVersion | None:
        with Session(self.engine) as s:
            row = s.get(ConfigVersionRow, version)
            return _stored(row) if row else None

    def history(self, *, limit: int, before: int | None = None) -> list[VersionInfo]:
        """Versions newest first, at most ``limit``, only those below ``before`` when given."""
        query = select(ConfigVersionRow).order_by(ConfigVersionRow.version.desc()).limit(limit)
        if before is not None:
            query = query.where(ConfigVersionRow.version < before)
        with Session(self.engine) as s:
            return [_info(r) for r in s.scalars(query)]

    def change(
        self,
        change: Change,
        mutate: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> tuple[StoredVersion, StoredVersion]:
        """Store ``mutate(newest document)`` as the next version; returns (before, after).

        ``mutate`` gets a copy of the newest document and may raise to refuse the
        change (nothing is stored). When the result equals the newest document no
        version is added and ``after`` is ``before``. Raises :class:`StaleVersion`
        when ``change.expected`` is set and is not the newest version.
        """
        for _ in range(MAX_WRITE_ATTEMPTS):
            before = self.latest()
            if change.expected is not None and change.expected != before.version:
                raise StaleVersion(change.expected, before.version)
            document = mutate(deepcopy(before.document))
            if document == before.document:
                return before, before
            info = VersionInfo(
                before.version + 1,
                self._now(),
                change.author,
                change.action,
                change.target,
                change.comment,
            )
            with Session(self.engine) as s:
                s.add(
                    ConfigVersionRow(
                        version=info.version,
                        created_at=info.created_at,
                        author=info.author,
                        action=info.action,
                        target=info.target,
                        comment=info.comment,
                        document=document,
                    )
                )
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()
                    continue  # another writer took this number: re-read and re-apply
            return before, StoredVersion(info, document)
        raise WriteContention(
            f"{MAX_WRITE_ATTEMPTS} other configuration changes were stored while this one was "
            "being written; send it again"
        )
