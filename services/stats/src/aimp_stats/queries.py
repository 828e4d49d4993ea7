"""SQL adapter, read side: aggregates over any range, time series, call lookups.

A range is planned by :func:`aimp_stats.ranges.plan_range` into raw rows (its
recent partial minutes) and bucket rows (the whole minutes, hours and days in
between); both become :class:`~aimp_stats.buckets.Aggregate` values that are
grouped as the question needs (by client, service, revision, time step).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Table, and_, case, func, select, true
from sqlalchemy.exc import OperationalError

from .buckets import Aggregate, BucketKey, group
from .domain import ERROR_STATUS_MIN, THROTTLED_STATUS, UsageFilter
from .idblocks import block_may_hold, id_hash
from .ranges import Plan, Retention, Tier, floor_to, plan_range, series_tier
from .schema import buckets, call_blocks, request_events
from .sketch import INV_LOG_GAMMA, MIN_MS, LatencySketch

Rows = Iterator[tuple[BucketKey, Aggregate]]
#: Calls a trace lookup returns at most.
TRACE_LIMIT = 1000
#: Id blocks read per query while looking a call up.
BLOCK_PAGE = 2000


@dataclass(frozen=True)
class Usage:
    """Aggregate usage over the calls a :class:`UsageFilter` selects."""

    requests: int
    errors: int
    throttled: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class CallRow:
    """One stored call: the event as the gateway sent it, and when it reached SQL."""

    fields: dict[str, Any]


def bucket_aggregate(row: Any, *, sketch: bool = True) -> Aggregate:
    """A bucket row read from SQL as an :class:`Aggregate`."""
    requests = int(row.requests)
    return Aggregate(
        requests=requests,
        throttled=int(row.throttled),
        latency_ms_sum=float(row.latency_ms_sum),
        upstream_ms_sum=float(row.upstream_ms_sum),
        bytes_in=int(row.bytes_in),
        bytes_out=int(row.bytes_out),
        sketch=LatencySketch.from_bytes(row.sketch) if sketch else LatencySketch(),
        errors=requests if row.status_class * 100 >= ERROR_STATUS_MIN else 0,
    )


def _raw_rows_grouped(conn: Connection, where: ColumnElement[bool], start: int) -> Rows:
    """Raw calls summed in SQL per (service, revision, client, status, sketch bucket)."""
    c = request_events.c
    bucket = case(
        (c.latency_ms <= MIN_MS, None), else_=func.ceil(func.ln(c.latency_ms) * INV_LOG_GAMMA)
    )
    query = (
        select(
            c.service, c.revision, c.client_id, c.status, bucket, func.count(),
            func.sum(c.latency_ms), func.sum(c.upstream_ms), func.sum(c.bytes_in),
            func.sum(c.bytes_out),
        )
        .where(where)
        .group_by(c.service, c.revision, c.client_id, c.status, bucket)
    )  # fmt: skip
    for service, revision, client, status, key, n, lat, up, b_in, b_out in conn.execute(query):
        sketch = LatencySketch()
        sketch.add_to_bucket(None if key is None else int(key), int(n))
        agg = Aggregate(
            requests=int(n),
            throttled=int(n) if status == THROTTLED_STATUS else 0,
            latency_ms_sum=float(lat),
            upstream_ms_sum=float(up),
            bytes_in=int(b_in),
            bytes_out=int(b_out),
            sketch=sketch,
            errors=int(n) if status >= ERROR_STATUS_MIN else 0,
        )
        yield BucketKey(start, service, revision, client, status // 100), agg


def _raw_rows(conn: Connection, where: ColumnElement[bool]) -> Rows:
    """Raw calls one by one (where SQL has no ln())."""
    c = request_events.c
    query = select(
        c.ts, c.service, c.revision, c.client_id, c.status, c.latency_ms, c.upstream_ms,
        c.bytes_in, c.bytes_out,
    ).where(where)  # fmt: skip
    for row in conn.execute(query):
        key = BucketKey(
            floor_to(row.ts, 60), row.service, row.revision, row.client_id, row.status // 100
        )
        yield key, _raw_aggregate(row)


def _raw_aggregate(row: Any) -> Aggregate:
    sketch = LatencySketch()
    sketch.add(row.latency_ms)
    return Aggregate(
        requests=1,
        throttled=1 if row.status == THROTTLED_STATUS else 0,
        latency_ms_sum=row.latency_ms,
        upstream_ms_sum=row.upstream_ms,
        bytes_in=row.bytes_in,
        bytes_out=row.bytes_out,
        sketch=sketch,
        errors=1 if row.status >= ERROR_STATUS_MIN else 0,
    )


def _filters(table: Table, flt: UsageFilter, extra: dict[str, str]) -> ColumnElement[bool]:
    c = table.c
    clauses: list[ColumnElement[bool]] = []
    if flt.service is not None:
        clauses.append(c.service == flt.service)
    if flt.client_id is not None:
        clauses.append(c.client_id == flt.client_id)
    clauses.extend(c[name] == value for name, value in extra.items())
    return and_(true(), *clauses)


class Queries:
    """Read methods shared by the API and the alarms; subclassed by the write side."""

    def __init__(self, engine: Engine, retention: Retention) -> None:
        self.engine = engine
        self.retention = retention
        self._has_ln: bool | None = None

    def _sql_has_ln(self, conn: Connection) -> bool:
        """Whether SQL has ln() (PostgreSQL does; SQLite when built with math functions)."""
        if self._has_ln is None:
            try:
                conn.execute(select(func.ln(2.0))).scalar()
                self._has_ln = True
            except OperationalError:
                conn.rollback()
                self._has_ln = False
        return self._has_ln

    def rows(
        self,
        conn: Connection,
        plan: Plan,
        flt: UsageFilter,
        *,
        sketches: bool = True,
        revision: str | None = None,
    ) -> Rows:
        """Every raw and bucket aggregate the plan covers that matches the filter."""
        extra = {} if revision is None else {"revision": revision}
        c = request_events.c
        for start, end in plan.raw:
            query = select(
                c.ts, c.service, c.revision, c.client_id, c.status, c.latency_ms,
                c.upstream_ms, c.bytes_in, c.bytes_out,
            ).where(c.ts >= start, c.ts < end, _filters(request_events, flt, extra))  # fmt: skip
            for row in conn.execute(query):
                key = BucketKey(
                    floor_to(row.ts, 60),
                    row.service,
                    row.revision,
                    row.client_id,
                    row.status // 100,
                )
                yield key, _raw_aggregate(row)
        for tier, start_s, end_s in plan.buckets:
            yield from self._bucket_rows(conn, tier, start_s, end_s, flt, extra, sketches)

    def _bucket_rows(
        self,
        conn: Connection,
        tier: Tier,
        start: int,
        end: int,
        flt: UsageFilter,
        extra: dict[str, str],
        sketches: bool,
    ) -> Rows:
        table = buckets[tier]
        c = table.c
        query = select(table).where(
            c.bucket_start >= start, c.bucket_start < end, _filters(table, flt, extra)
        )
        for row in conn.execute(query):
            yield BucketKey(*row[:5]), bucket_aggregate(row, sketch=sketches)

    def aggregate(
        self,
        flt: UsageFilter,
        by: Callable[[BucketKey], Hashable],
        *,
        now: float | None = None,
        sketches: bool = True,
        revision: str | None = None,
    ) -> tuple[Plan, dict[Hashable, Aggregate]]:
        """Aggregates over the filter's range, grouped by ``by`` of each row's key."""
        plan = plan_range(flt.since, flt.until, time.time() if now is None else now, self.retention)
        with self.engine.connect() as conn:
            rows = self.rows(conn, plan, flt, sketches=sketches, revision=revision)
            return plan, group(rows, by)

    def usage(self, flt: UsageFilter, now: float | None = None) -> Usage:
        """Counts (exact) and p50/p99 (within the sketch's 1 %) over the selected calls."""
        _, groups = self.aggregate(flt, lambda _key: None, now=now)
        agg = groups.get(None) or Aggregate()
        return Usage(
            agg.requests,
            agg.errors,
            agg.throttled,
            agg.sketch.quantile(50),
            agg.sketch.quantile(99),
        )

    def series(
        self, flt: UsageFilter, step_s: int, now: float | None = None
    ) -> tuple[Tier, int, int, dict[Hashable, Aggregate]]:
        """Aggregates per step (keyed by the step's start) from one tier of buckets."""
        now = time.time() if now is None else now
        since = floor_to(flt.since if flt.since is not None else now - 60 * step_s, step_s)
        until = floor_to(flt.until if flt.until is not None else now + step_s, step_s)
        tier = series_tier(step_s, since, now, self.retention)
        with self.engine.connect() as conn:
            rows = self._bucket_rows(conn, tier, since, until, flt, {}, True)
            return tier, since, until, group(rows, lambda k: floor_to(k.start, step_s))

    def call_by_request_id(self, request_id: str) -> CallRow | None:
        """The latest stored call with this request id (within raw retention)."""
        found = self._lookup(request_events.c.request_id == request_id, id_hash(request_id), 1)
        return found[0] if found else None

    def calls_by_trace_id(self, trace_id: str, limit: int = TRACE_LIMIT) -> list[CallRow]:
        """Stored calls of one trace, oldest first (within raw retention)."""
        found = self._lookup(request_events.c.trace_id == trace_id, id_hash(trace_id), limit)
        return sorted(found, key=lambda r: (r.fields["ts"], r.fields["stored_at"]))

    def _lookup(self, match: ColumnElement[bool], wanted: int, limit: int) -> list[CallRow]:
        """Calls matching ``match`` in blocks whose id hashes hold ``wanted``, newest first."""
        b, seq = call_blocks.c, request_events.c.seq
        out: list[CallRow] = []
        below: int | None = None
        with self.engine.connect() as conn:
            while len(out) < limit:
                page = select(b.seq_from, b.seq_to, b.id_hashes).order_by(b.seq_from.desc())
                if below is not None:
                    page = page.where(b.seq_from < below)
                blocks = conn.execute(page.limit(BLOCK_PAGE)).all()
                if not blocks:
                    break
                below = int(blocks[-1].seq_from)
                for seq_from, seq_to, hashes in blocks:
                    if len(out) >= limit or not block_may_hold(hashes, wanted):
                        continue
                    query = select(request_events).where(seq >= seq_from, seq <= seq_to, match)
                    rows = conn.execute(query.order_by(seq.desc())).mappings().all()
                    out.extend(CallRow(_public(r)) for r in rows[: limit - len(out)])
        return out


def _public(row: Any) -> dict[str, Any]:
    fields = dict(row)
    fields.pop("seq", None)
    return fields
