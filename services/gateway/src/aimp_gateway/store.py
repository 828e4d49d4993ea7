"""The gateway's SQL store: OAuth2 clients and console users (secrets hashed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Engine, Integer, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class ClientRow(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    roles: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    roles: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    secret_hash: str
    roles: tuple[str, ...]
    created_at: datetime
    disabled: bool


@dataclass(frozen=True)
class UserRecord:
    username: str
    password_hash: str
    roles: tuple[str, ...]


class ClientExists(Exception):
    """A client with this id is already stored."""


class UserExists(Exception):
    """A user with this name is already stored."""


def _client(row: ClientRow) -> ClientRecord:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return ClientRecord(row.client_id, row.secret_hash, tuple(row.roles), created, row.disabled)


class Store:
    """Synchronous SQL access; async callers run these methods in a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        Base.metadata.create_all(self.engine)

    # -- clients -------------------------------------------------------------------

    def get_client(self, client_id: str) -> ClientRecord | None:
        with Session(self.engine) as s:
            row = s.scalar(select(ClientRow).where(ClientRow.client_id == client_id))
            return _client(row) if row else None

    def list_clients(self) -> list[ClientRecord]:
        with Session(self.engine) as s:
            return [_client(r) for r in s.scalars(select(ClientRow).order_by(ClientRow.client_id))]

    def add_client(self, client_id: str, secret_hash: str, roles: list[str]) -> ClientRecord:
        """Insert a new client; :class:`ClientExists` if the id is taken."""
        row = ClientRow(
            client_id=client_id,
            secret_hash=secret_hash,
            roles=list(roles),
            created_at=datetime.now(UTC),
            disabled=False,
        )
        with Session(self.engine) as s:
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                raise ClientExists(client_id) from None
            return _client(row)

    def put_client(self, client_id: str, secret_hash: str, roles: list[str]) -> None:
        """Insert or update a client (enabled) with this hash and these roles."""
        with Session(self.engine) as s:
            row = s.scalar(select(ClientRow).where(ClientRow.client_id == client_id))
            if row is None:
                s.add(
                    ClientRow(
                        client_id=client_id,
                        secret_hash=secret_hash,
                        roles=list(roles),
                        created_at=datetime.now(UTC),
                        disabled=False,
                    )
                )
            else:
                row.secret_hash, row.roles, row.disabled = secret_hash, list(roles), False
            s.commit()

    def update_client(
        self, client_id: str, *, roles: list[str] | None = None, disabled: bool | None = None
    ) -> ClientRecord | None:
        """Change a client's roles and/or disabled flag; None when it does not exist."""
        with Session(self.engine) as s:
            row = s.scalar(select(ClientRow).where(ClientRow.client_id == client_id))
            if row is None:
                return None
            if roles is not None:
                row.roles = list(roles)
            if disabled is not None:
                row.disabled = disabled
            s.commit()
            return _client(row)

    def delete_client(self, client_id: str) -> bool:
        with Session(self.engine) as s:
            deleted = s.execute(delete(ClientRow).where(ClientRow.client_id == client_id))
            s.commit()
            return bool(getattr(deleted, "rowcount", 0))

    # -- users -----------------------------------------------------------------------

    def get_user(self, username: str) -> UserRecord | None:
        with Session(self.engine) as s:
            row = s.scalar(select(UserRow).where(UserRow.username == username))
            return UserRecord(row.username, row.password_hash, tuple(row.roles)) if row else None

    def list_users(self) -> list[UserRecord]:
        with Session(self.engine) as s:
            rows = s.scalars(select(UserRow).order_by(UserRow.username))
            return [UserRecord(r.username, r.password_hash, tuple(r.roles)) for r in rows]

    def add_user(self, username: str, password_hash: str, roles: list[str]) -> UserRecord:
        """Insert a new user; :class:`UserExists` if the name is taken."""
        with Session(self.engine) as s:
            s.add(UserRow(username=username, password_hash=password_hash, roles=list(roles)))
            try:
                s.commit()
            except IntegrityError:
                raise UserExists(username) from None
        return UserRecord(username, password_hash, tuple(roles))

    def update_user(
        self, username: str, *, roles: list[str] | None = None, password_hash: str | None = None
    ) -> UserRecord | None:
        """Change a user's roles and/or password hash; None when the user does not exist."""
        with Session(self.engine) as s:
            row = s.scalar(select(UserRow).where(UserRow.username == username))
            if row is None:
                return None
            if roles is not None:
                row.roles = list(roles)
            if password_hash is not None:
                row.password_hash = password_hash
            s.commit()
            return UserRecord(row.username, row.password_hash, tuple(row.roles))

    def delete_user(self, username: str) -> bool:
        with Session(self.engine) as s:
            deleted = s.execute(delete(UserRow).where(UserRow.username == username))
            s.commit()
            return bool(getattr(deleted, "rowcount", 0))

    def put_user(self, username: str, password_hash: str, roles: list[str]) -> None:
        with Session(self.engine) as s:
            row = s.scalar(select(UserRow).where(UserRow.username == username))
            if row is None:
                s.add(UserRow(username=username, password_hash=password_hash, roles=list(roles)))
            else:
                row.password_hash, row.roles = password_hash, list(roles)
            s.commit()
