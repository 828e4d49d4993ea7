"""SQL adapter, write side: the ingest transaction, call lookups, expiry, the schema.

Methods are synchronous (SQLAlchemy Core); callers on the event loop run them
with ``asyncio.to_thread``. One :meth:`EventStore.ingest` is one transaction that
(1) takes the ingest lock, (2) drops events whose (``ts``, ``event_id``) is
already stored, (3) inserts the rest as raw rows with their id block
(:mod:`aimp_stats.idblocks`) and (4) merges them into the minute, hour and day
buckets. Either all of that commits or none of it, and the consumer commits
Kafka offsets only afterwards: a redelivered event is found in step 2 and never
counted twice. Reads (:mod:`aimp_stats.queries`) go through the same class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table, event, inspect, select, text, update

from aimp_core.db import make_engine
from aimp_core.events import RequestEvent

from .buckets import Aggregate, BucketKey, coarsen, fold
from .domain import unique_by_event_id
from .idblocks import encode_block
from .queries import CallRow, Queries, Usage, bucket_aggregate
from .ranges import Retention, Tier
from .schema import (
    BUCKET_KEYS,
    BUCKET_VALUES,
    buckets,
    call_blocks,
    ingest_lock,
    metadata,
    request_events,
)

log = logging.getLogger(__name__)

#: Ids per ``IN (...)`` lookup: far under SQLite's (32766) and PostgreSQL's bind limits.
IDS_PER_QUERY = 1000
#: Rows deleted per expiry transaction, so expiry never holds the write lock for long.
DELETE_CHUNK = 50_000
#: Defaults of StatsSettings' retention settings (24 h raw, 7 d, 90 d, 2 y).
DEFAULT_RETENTION = Retention(86_400, 7 * 86_400, 90 * 86_400, 730 * 86_400)

__all__ = ["DEFAULT_RETENTION", "CallRow", "EventStore", "IngestResult", "Usage", "request_events"]


@dataclass(frozen=True)
class IngestResult:
    added: int
    duplicates: int


def stats_engine(url: str) -> Engine:
    """``make_engine`` plus a larger SQLite page cache (64 MiB per connection, not 2 MiB):
    the ingest transaction's indexes and bucket rows then stay in memory."""
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _cache(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA cache_size=-65536")

    return engine


class UnsupportedDatabase(ValueError):
    """The configured SQL database is neither SQLite nor PostgreSQL."""

    def __init__(self, dialect: str) -> None:
        super().__init__(
            f"stats supports SQLite and PostgreSQL, not {dialect!r}; set AIMP_DATABASE_URL "
            "to a sqlite:/// or postgresql:// URL"
        )


class EventStore(Queries):
    """Request events in SQL: raw recent calls plus minute, hour and day buckets."""

    def __init__(self, engine: Engine, retention: Retention = DEFAULT_RETENTION) -> None:
        super().__init__(engine, retention)
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise UnsupportedDatabase(engine.dialect.name)
        #: The DB-API's placeholder (SQLite's qmark, psycopg's format).
        self._mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        columns = [c.name for c in request_events.columns]
        # Table and column names come from schema.py, never from input; values are bound.
        self._insert_raw_sql = (
            f"INSERT INTO request_events ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({self._marks(len(columns))})"
        )

    # -- schema ---------------------------------------------------------------------

    def create_schema(self) -> None:
        self._park_old_table()
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            if conn.execute(select(ingest_lock.c.id)).first() is None:
                conn.execute(ingest_lock.insert().values(id=1, batches=0, next_seq=1))
        self._migrate_parked()

    def _park_old_table(self) -> None:
        """Rename a ``request_events`` table from before buckets (no ``seq``) out of the way."""
        names = inspect(self.engine).get_table_names()
        if "request_events" not in names or "request_events_v0" in names:
            return
        columns = {c["name"] for c in inspect(self.engine).get_columns("request_events")}
        if "seq" not in columns:
            with self.engine.begin() as conn:
                for index in inspect(self.engine).get_indexes("request_events"):
                    conn.execute(text(f'DROP INDEX IF EXISTS "{index["name"]}"'))
                conn.execute(text("ALTER TABLE request_events RENAME TO request_events_v0"))

    def _migrate_parked(self) -> None:
        """Ingest the rows of a parked pre-bucket table (once), then drop it."""
        if "request_events_v0" not in inspect(self.engine).get_table_names():
            return
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM request_events_v0")).mappings().all()
        events = [RequestEvent.model_validate(dict(r)) for r in rows]
        for start in range(0, len(events), 5000):
            self.ingest(events[start : start + 5000])
        with self.engine.begin() as conn:
            conn.execute(text("DROP TABLE request_events_v0"))
        log.info("moved %d stored events into the bucketed schema", len(events))

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # -- ingest ---------------------------------------------------------------------

    def ingest(
        self, events: Sequence[RequestEvent], stored_at: float | None = None
    ) -> IngestResult:
        """Store and count the events not stored before, atomically (see the module doc)."""
        if not events:
            return IngestResult(0, 0)
        unique = unique_by_event_id(events)
        with self.engine.begin() as conn:
            # The first statement writes, so SQLite takes its write lock now (not at the
            # first insert after our reads) and PostgreSQL locks the row: ingests serialize.
            conn.execute(update(ingest_lock).values(batches=ingest_lock.c.batches + 1))
            stored = self._stored(conn, unique)
            new = [e for e in unique if (e.ts, e.event_id) not in stored]
            if new:
                at = time.time() if stored_at is None else stored_at
                self._insert_raw(conn, new, at)
                minutes = fold(new, Tier.MINUTE)
                # Coarser tiers first: merging stored rows in changes the minute aggregates.
                for tier in (Tier.DAY, Tier.HOUR):
                    self._merge_buckets(conn, buckets[tier], coarsen(minutes, tier))
                self._merge_buckets(conn, buckets[Tier.MINUTE], minutes)
        return IngestResult(len(new), len(events) - len(new))

    def _insert_raw(self, conn: Connection, events: list[RequestEvent], at: float) -> None:
        first = int(conn.execute(select(ingest_lock.c.next_seq)).scalar_one())
        rows = [
            (
                first + i, e.event_id, e.ts, at, e.trace_id, e.request_id, e.client_id,
                e.service, e.revision, e.instance_id, e.status, e.latency_ms, e.upstream_ms,
                e.bytes_in, e.bytes_out, e.outcome,
            )
            for i, e in enumerate(events)
        ]  # fmt: skip
        # The DB-API's executemany directly: SQLAlchemy's per-row processing costs ~8 us/row.
        conn.exec_driver_sql(self._insert_raw_sql, rows)
        ids = [e.request_id for e in events] + [e.trace_id for e in events]
        conn.execute(
            call_blocks.insert().values(
                seq_from=first,
                seq_to=first + len(events) - 1,
                stored_at=at,
                id_hashes=encode_block(ids),
            )
        )
        conn.execute(update(ingest_lock).values(next_seq=first + len(events)))

    def insert_events(self, events: Sequence[RequestEvent]) -> int:
        """Ingest ``events`` now; returns how many were new (kept for older callers)."""
        return self.ingest(events).added

    def _stored(self, conn: Connection, events: list[RequestEvent]) -> set[tuple[float, str]]:
        """(ts, event_id) of the events already stored (an index seek per ts)."""
        found: set[tuple[float, str]] = set()
        stamps = sorted({e.ts for e in events})
        for start in range(0, len(stamps), IDS_PER_QUERY):
            chunk = tuple(stamps[start : start + IDS_PER_QUERY])
            marks = self._marks(len(chunk))
            sql = f"SELECT ts, event_id FROM request_events WHERE ts IN ({marks})"  # noqa: S608
            found.update((float(ts), str(eid)) for ts, eid in conn.exec_driver_sql(sql, chunk))
        return found

    def _marks(self, n: int) -> str:
        return ", ".join([self._mark] * n)

    def _merge_buckets(
        self, conn: Connection, table: Table, deltas: dict[BucketKey, Aggregate]
    ) -> None:
        c = table.c
        query = select(table).where(
            c.bucket_start.in_({k.start for k in deltas}),
            c.service.in_({k.service for k in deltas}),
            c.client_id.in_({k.client_id for k in deltas}),
        )
        for row in conn.execute(query):
            key = BucketKey(*row[:5])
            delta = deltas.get(key)
            if delta is not None:
                delta.merge(bucket_aggregate(row))
        rows = [
            (
                *key, agg.requests, agg.throttled, agg.latency_ms_sum, agg.upstream_ms_sum,
                agg.bytes_in, agg.bytes_out, agg.sketch.to_bytes(),
            )
            for key, agg in deltas.items()
        ]  # fmt: skip
        columns = (*BUCKET_KEYS, *BUCKET_VALUES)
        sql = (  # names from schema.py, values bound
            f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({self._marks(len(columns))})"
            f" ON CONFLICT ({', '.join(BUCKET_KEYS)}) DO UPDATE SET "
            + ", ".join(f"{n} = excluded.{n}" for n in BUCKET_VALUES)
        )  # the same statement in SQLite and PostgreSQL
        conn.exec_driver_sql(sql, rows)

    # -- expiry ---------------------------------------------------------------------

    def expire(self, now: float | None = None) -> dict[str, int]:
        """Delete raw rows and buckets older than their retention; rows deleted per table."""
        now = time.time() if now is None else now
        deleted = {"request_events": self._expire_raw(now - self.retention.raw_s)}
        for tier, table in buckets.items():
            cutoff = now - self.retention.of(tier)
            with self.engine.begin() as conn:
                result = conn.execute(table.delete().where(table.c.bucket_start < cutoff))
            deleted[table.name] = max(0, result.rowcount)
        return deleted

    def _expire_raw(self, cutoff: float) -> int:
        """Delete the calls (and their id blocks) of the batches stored before ``cutoff``."""
        b = call_blocks.c
        with self.engine.connect() as conn:
            last = conn.execute(
                select(b.seq_to).where(b.stored_at < cutoff).order_by(b.seq_from.desc()).limit(1)
            ).scalar()
            lowest = conn.execute(select(b.seq_from).order_by(b.seq_from).limit(1)).scalar()
        if last is None or lowest is None:
            return 0
        deleted = 0
        seq = request_events.c.seq
        for start in range(int(lowest), int(last) + 1, DELETE_CHUNK):
            end = min(start + DELETE_CHUNK, int(last) + 1)
            with self.engine.begin() as conn:
                result = conn.execute(request_events.delete().where(seq >= start, seq < end))
                conn.execute(call_blocks.delete().where(b.seq_from < end, b.seq_to < end))
            deleted += max(0, result.rowcount)
        return deleted
