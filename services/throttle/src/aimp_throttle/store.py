"""SQL adapter: the ``throttle_policies`` table.

Methods are synchronous (SQLAlchemy Core); the API runs them with
``asyncio.to_thread`` so the event loop never waits on the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from .domain import Policy

metadata = MetaData()

throttle_policies = Table(
    "throttle_policies",
    metadata,
    Column("policy_id", String(64), primary_key=True),
    Column("client_id", String(128), nullable=True, index=True),
    Column("service", String(63), nullable=True, index=True),
    Column("rate", Float, nullable=False),
    Column("burst", Integer, nullable=False),
    Column("quota_day", BigInteger, nullable=True),
    Column("concurrency", Integer, nullable=True),
    Column("on_redis_down", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class PolicyStore:
    """Throttle policies in SQL (SQLite locally, PostgreSQL in production)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        metadata.create_all(self.engine)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def get(self, policy_id: str) -> Policy | None:
        query = select(throttle_policies).where(throttle_policies.c.policy_id == policy_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _policy(row)

    def list_all(self) -> list[Policy]:
        query = select(throttle_policies).order_by(throttle_policies.c.policy_id)
        with self.engine.connect() as conn:
            return [_policy(row) for row in conn.execute(query).mappings()]

    def put(self, policy_id: str, fields: dict[str, Any], now: datetime) -> tuple[Policy, bool]:
        """Create or replace the policy; returns it and whether it was created."""
        try:
            return self._put_once(policy_id, fields, now)
        except IntegrityError:
            # A concurrent PUT created the same id between our read and insert: replace it.
            return self._put_once(policy_id, fields, now)

    def _put_once(
        self, policy_id: str, fields: dict[str, Any], now: datetime
    ) -> tuple[Policy, bool]:
        table = throttle_policies
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(table.c.policy_id).where(table.c.policy_id == policy_id)
            ).first()
            if exists is None:
                conn.execute(
                    insert(table).values(
                        policy_id=policy_id, **fields, created_at=now, updated_at=now
                    )
                )
            else:
                conn.execute(
                    update(table)
                    .where(table.c.policy_id == policy_id)
                    .values(**fields, updated_at=now)
                )
            row = conn.execute(select(table).where(table.c.policy_id == policy_id)).mappings().one()
        return _policy(row), exists is None

    def delete(self, policy_id: str) -> bool:
        """Remove the policy; False if there was none."""
        query = delete(throttle_policies).where(throttle_policies.c.policy_id == policy_id)
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount > 0


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every timestamp here is stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _policy(row: Any) -> Policy:
    return Policy(
        policy_id=row["policy_id"],
        client_id=row["client_id"],
        service=row["service"],
        rate=float(row["rate"]),
        burst=int(row["burst"]),
        quota_day=None if row["quota_day"] is None else int(row["quota_day"]),
        concurrency=None if row["concurrency"] is None else int(row["concurrency"]),
        on_redis_down=row["on_redis_down"],
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
    )
