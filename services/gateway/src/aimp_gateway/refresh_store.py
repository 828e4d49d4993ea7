"""Refresh tokens in SQL (hashes only), with atomic rotation and family revocation."""

from __future__ import annotations

from sqlalchemy import JSON, Engine, Float, Index, String, delete, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from aimp_gateway.refresh import RefreshRecord, RefreshState, transition


class _Base(DeclarativeBase):
    pass


class RefreshRow(_Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_family", "family_id"),
        Index("ix_refresh_subject", "subject"),
    )

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(64), nullable=False)
    subject: Mapped[str] = mapped_column(String(128), nullable=False)
    client_id: Mapped[str] = mapped_column(String(128), nullable=False)
    roles: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    issued_at: Mapped[float] = mapped_column(Float, nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)
    family_expires_at: Mapped[float] = mapped_column(Float, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    access_jti: Mapped[str] = mapped_column(String(64), nullable=False)
    access_expires_at: Mapped[float] = mapped_column(Float, nullable=False)


def _record(row: RefreshRow) -> RefreshRecord:
    return RefreshRecord(
        token_hash=row.token_hash,
        family_id=row.family_id,
        subject=row.subject,
        client_id=row.client_id,
        roles=tuple(row.roles),
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        family_expires_at=row.family_expires_at,
        state=RefreshState(row.state),
        access_jti=row.access_jti,
        access_expires_at=row.access_expires_at,
    )


AccessTokens = list[tuple[str, float]]


class RefreshStore:
    """Synchronous; callers run it in a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        _Base.metadata.create_all(self.engine)

    def add(self, record: RefreshRecord) -> None:
        with Session(self.engine) as s:
            s.add(
                RefreshRow(
                    token_hash=record.token_hash,
                    family_id=record.family_id,
                    subject=record.subject,
                    client_id=record.client_id,
                    roles=list(record.roles),
                    issued_at=record.issued_at,
                    expires_at=record.expires_at,
                    family_expires_at=record.family_expires_at,
                    state=record.state.value,
                    access_jti=record.access_jti,
                    access_expires_at=record.access_expires_at,
                )
            )
            s.commit()

    def get(self, token_hash: str) -> RefreshRecord | None:
        with Session(self.engine) as s:
            row = s.get(RefreshRow, token_hash)
            return _record(row) if row else None

    def mark_rotated(self, token_hash: str) -> bool:
        """Spend an active token; False when another request spent it first (reuse)."""
        transition(RefreshState.ACTIVE, RefreshState.ROTATED)
        with Session(self.engine) as s:
            result = s.execute(
                update(RefreshRow)
                .where(RefreshRow.token_hash == token_hash)
                .where(RefreshRow.state == RefreshState.ACTIVE.value)
                .values(state=RefreshState.ROTATED.value)
            )
            s.commit()
            return bool(getattr(result, "rowcount", 0))

    def _revoke_where(self, *conditions: object) -> AccessTokens:
        with Session(self.engine) as s:
            rows = list(s.scalars(select(RefreshRow).where(*conditions)))  # type: ignore[arg-type]
            access = [(r.access_jti, r.access_expires_at) for r in rows if r.access_jti]
            ids = [r.token_hash for r in rows if r.state != RefreshState.REVOKED.value]
            if ids:
                s.execute(
                    update(RefreshRow)
                    .where(RefreshRow.token_hash.in_(ids))
                    .values(state=RefreshState.REVOKED.value)
                )
                s.commit()
            return access

    def revoke_family(self, family_id: str) -> AccessTokens:
        """Revoke every token of a sign-in; returns its access tokens ``(jti, exp)``."""
        return self._revoke_where(RefreshRow.family_id == family_id)

    def revoke_subject(self, subject: str) -> AccessTokens:
        """Revoke every sign-in of a user (password, roles changed; user deleted)."""
        return self._revoke_where(RefreshRow.subject == subject)

    def prune(self, now: float) -> int:
        """Forget tokens that expired (reuse of an expired token is refused as expired)."""
        with Session(self.engine) as s:
            result = s.execute(delete(RefreshRow).where(RefreshRow.expires_at < now))
            s.commit()
            return int(getattr(result, "rowcount", 0) or 0)
