"""SQL adapter: the ``request_events`` table, idempotent batch inserts, usage queries.

Methods are synchronous (SQLAlchemy Core); callers on the event loop run them
with ``asyncio.to_thread``. ``event_id`` is the primary key and inserts ignore a
row whose id is already stored, so replaying a Kafka batch never counts twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    func,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from aimp_core.events import RequestEvent

from .domain import ERROR_STATUS_MIN, TEXT_LIMITS, THROTTLED_STATUS, UsageFilter, nearest_rank

#: Rows per INSERT statement: 1000 rows x 14 columns stays under SQLite's (32766) and
#: PostgreSQL's (65535) bound-parameter limits.
ROWS_PER_STATEMENT = 1000

metadata = MetaData()

request_events = Table(
    "request_events",
    metadata,
    Column("event_id", String(TEXT_LIMITS["event_id"]), primary_key=True),
    Column("ts", Float, nullable=False),
    Column("trace_id", String(TEXT_LIMITS["trace_id"]), nullable=False),
    Column("request_id", String(TEXT_LIMITS["request_id"]), nullable=False),
    Column("client_id", String(TEXT_LIMITS["client_id"]), nullable=False),
    Column("service", String(TEXT_LIMITS["service"]), nullable=False),
    Column("revision", String(TEXT_LIMITS["revision"]), nullable=False),
    Column("instance_id", String(TEXT_LIMITS["instance_id"]), nullable=False),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("upstream_ms", Float, nullable=False),
    Column("bytes_in", BigInteger, nullable=False),
    Column("bytes_out", BigInteger, nullable=False),
    Column("outcome", String(TEXT_LIMITS["outcome"]), nullable=False),
    Index("ix_request_events_service_ts", "service", "ts"),
    Index("ix_request_events_client_ts", "client_id", "ts"),
    Index("ix_request_events_ts", "ts"),
)


@dataclass(frozen=True)
class Usage:
    """Aggregate usage over the calls a :class:`UsageFilter` selects."""

    requests: int
    errors: int
    throttled: int
    p50_ms: float | None
    p99_ms: float | None


class EventStore:
    """Request events in SQL (SQLite locally, PostgreSQL in production)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        metadata.create_all(self.engine)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def insert_events(self, events: Sequence[RequestEvent]) -> int:
        """Store events in one transaction, ignoring ids already stored; returns rows added."""
        if not events:
            return 0
        rows = [event.model_dump() for event in events]
        added = 0
        with self.engine.begin() as conn:
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                chunk = rows[start : start + ROWS_PER_STATEMENT]
                # One multi-row statement: its rowcount is the number of rows really added.
                result = conn.execute(self._insert_ignoring_duplicates().values(chunk))
                added += max(0, result.rowcount)
        return added

    def _insert_ignoring_duplicates(self) -> Any:
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            return sqlite.insert(request_events).on_conflict_do_nothing(index_elements=["event_id"])
        if dialect == "postgresql":
            return postgresql.insert(request_events).on_conflict_do_nothing(
                index_elements=["event_id"]
            )
        raise NotImplementedError(
            f"stats supports SQLite and PostgreSQL; {dialect!r} has no insert-or-ignore here"
        )

    def usage(self, flt: UsageFilter) -> Usage:
        """Counts and nearest-rank latency percentiles, each percentile one indexed lookup."""
        where = _where(flt)
        counts = select(
            func.count(),
            func.coalesce(func.sum(case((request_events.c.status >= ERROR_STATUS_MIN, 1))), 0),
            func.coalesce(func.sum(case((request_events.c.status == THROTTLED_STATUS, 1))), 0),
        ).where(where)
        with self.engine.connect() as conn:
            requests, errors, throttled = conn.execute(counts).one()
            p50 = _percentile(conn, where, int(requests), 50)
            p99 = _percentile(conn, where, int(requests), 99)
        return Usage(int(requests), int(errors), int(throttled), p50, p99)


def _where(flt: UsageFilter) -> ColumnElement[bool]:
    c = request_events.c
    clauses: list[ColumnElement[bool]] = []
    if flt.service is not None:
        clauses.append(c.service == flt.service)
    if flt.client_id is not None:
        clauses.append(c.client_id == flt.client_id)
    if flt.since is not None:
        clauses.append(c.ts >= flt.since)
    if flt.until is not None:
        clauses.append(c.ts < flt.until)
    return and_(true(), *clauses)


def _percentile(conn: Any, where: ColumnElement[bool], count: int, percent: float) -> float | None:
    if count == 0:
        return None
    rank = nearest_rank(count, percent)
    query = (
        select(request_events.c.latency_ms)
        .where(where)
        .order_by(request_events.c.latency_ms)
        .offset(rank - 1)
        .limit(1)
    )
    value = conn.execute(query).scalar_one_or_none()
    return None if value is None else float(value)
