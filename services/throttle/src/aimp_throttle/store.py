"""SQL adapter: the tables of policies, plans and plan assignments; policies' methods.

Methods are synchronous (SQLAlchemy Core); the API runs them with
``asyncio.to_thread`` so the event loop never waits on the database.
Columns added after the first release are added to an existing table at start
(:func:`create_schema`), so an old local database keeps working.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    false,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from .domain import Limits, Policy

log = logging.getLogger(__name__)

metadata = MetaData()


def _limit_columns() -> list[Column[Any]]:
    return [
        Column("rate", Float, nullable=False),
        Column("burst", Integer, nullable=False),
        Column("quota_day", BigInteger, nullable=True),
        Column("quota_month", BigInteger, nullable=True),
        Column("concurrency", Integer, nullable=True),
        Column("warmup_s", Float, nullable=True),
        Column("cold_factor", Float, nullable=False, server_default=text("3.0")),
        Column("warmup_started_at", DateTime(timezone=True), nullable=True),
        Column("on_redis_down", String(8), nullable=False),
    ]


throttle_policies = Table(
    "throttle_policies",
    metadata,
    Column("policy_id", String(64), primary_key=True),
    Column("client_id", String(128), nullable=True, index=True),
    Column("service", String(63), nullable=True, index=True),
    Column("per_client", Boolean, nullable=False, server_default=false()),
    *_limit_columns(),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

throttle_plans = Table(
    "throttle_plans",
    metadata,
    Column("plan_id", String(64), primary_key=True),
    Column("description", String(500), nullable=False, server_default=""),
    *_limit_columns(),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

throttle_assignments = Table(
    "throttle_assignments",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("plan_id", String(64), ForeignKey("throttle_plans.plan_id"), nullable=False, index=True),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
)

LIMIT_FIELDS = (
    "rate",
    "burst",
    "quota_day",
    "quota_month",
    "concurrency",
    "warmup_s",
    "cold_factor",
    "warmup_started_at",
    "on_redis_down",
)


class ScopeTaken(Exception):
    """Another policy already limits the same client, service and bucket."""

    def __init__(self, policy_id: str) -> None:
        super().__init__(policy_id)
        self.policy_id = policy_id


def create_schema(engine: Engine) -> None:
    """Create missing tables, and add columns that newer releases introduced."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspect(conn).get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    _add_column(conn, table.name, column)


def _add_column(conn: Connection, table: str, column: Column[Any]) -> None:
    ddl = f"ALTER TABLE {table} ADD COLUMN {column.name} {column.type.compile(conn.dialect)}"
    if column.server_default is not None:
        default = column.server_default.arg  # type: ignore[attr-defined]
        compiled = default.compile(dialect=conn.dialect) if hasattr(default, "compile") else default
        ddl += f" NOT NULL DEFAULT {compiled}" if not column.nullable else f" DEFAULT {compiled}"
    conn.execute(text(ddl))
    log.info("added a column to an existing table", extra={"table": table, "column": column.name})


def utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; every timestamp here is stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def limits_of(row: Any) -> Limits:
    started = row["warmup_started_at"]
    return Limits(
        rate=float(row["rate"]),
        burst=int(row["burst"]),
        quota_day=None if row["quota_day"] is None else int(row["quota_day"]),
        quota_month=None if row["quota_month"] is None else int(row["quota_month"]),
        concurrency=None if row["concurrency"] is None else int(row["concurrency"]),
        warmup_s=None if row["warmup_s"] is None else float(row["warmup_s"]),
        cold_factor=float(row["cold_factor"]),
        warmup_started_at=None if started is None else utc(started),
        on_redis_down=row["on_redis_down"],
    )


def limit_values(limits: Limits) -> dict[str, Any]:
    return {name: getattr(limits, name) for name in LIMIT_FIELDS}


def _policy(row: Any) -> Policy:
    return Policy(
        policy_id=row["policy_id"],
        client_id=row["client_id"],
        service=row["service"],
        per_client=bool(row["per_client"]),
        limits=limits_of(row),
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
    )


class PolicyStore:
    """Throttle policies in SQL (SQLite locally, PostgreSQL in production)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        create_schema(self.engine)

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

    def put(
        self,
        policy_id: str,
        scope: tuple[str | None, str | None, bool],
        limits: Limits,
        now: datetime,
    ) -> tuple[Policy, bool]:
        """Create or replace the policy; returns it and whether it was created.

        Raises :class:`ScopeTaken` when another policy limits the same scope.
        """
        try:
            return self._put_once(policy_id, scope, limits, now)
        except IntegrityError:
            # A concurrent PUT created the same id between our read and insert: replace it.
            return self._put_once(policy_id, scope, limits, now)

    def _put_once(
        self,
        policy_id: str,
        scope: tuple[str | None, str | None, bool],
        limits: Limits,
        now: datetime,
    ) -> tuple[Policy, bool]:
        table = throttle_policies
        client_id, service, per_client = scope
        values = {
            "client_id": client_id,
            "service": service,
            "per_client": per_client,
            **limit_values(limits),
        }
        with self.engine.begin() as conn:
            taken = conn.execute(
                select(table.c.policy_id).where(
                    table.c.client_id.is_(None) if client_id is None
                    else table.c.client_id == client_id,
                    table.c.service.is_(None) if service is None else table.c.service == service,
                    table.c.per_client == per_client,
                    table.c.policy_id != policy_id,
                )
            ).first()  # fmt: skip
            if taken is not None:
                raise ScopeTaken(taken[0])
            row = conn.execute(select(table).where(table.c.policy_id == policy_id)).mappings()
            exists = row.first()
            if exists is None:
                conn.execute(
                    insert(table).values(
                        policy_id=policy_id, **values, created_at=now, updated_at=now
                    )
                )
            else:
                if limits.warmup_started_at is None:
                    values["warmup_started_at"] = exists["warmup_started_at"]
                conn.execute(
                    update(table)
                    .where(table.c.policy_id == policy_id)
                    .values(**values, updated_at=now)
                )
            out = conn.execute(select(table).where(table.c.policy_id == policy_id)).mappings()
            return _policy(out.one()), exists is None

    def start_warmup(self, policy_id: str, now: datetime) -> Policy | None:
        """Restart the policy's warm-up ramp now; None if there is no such policy."""
        table = throttle_policies
        with self.engine.begin() as conn:
            conn.execute(
                update(table).where(table.c.policy_id == policy_id).values(warmup_started_at=now)
            )
            row = conn.execute(select(table).where(table.c.policy_id == policy_id)).mappings()
            found = row.first()
        return None if found is None else _policy(found)

    def delete(self, policy_id: str) -> bool:
        """Remove the policy; False if there was none."""
        query = delete(throttle_policies).where(throttle_policies.c.policy_id == policy_id)
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount > 0
