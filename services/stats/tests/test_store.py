"""The SQL adapter against a real temporary SQLite database."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from aimp_core.events import RequestEvent
from aimp_stats.domain import UsageFilter, percentile
from aimp_stats.ranges import Retention
from aimp_stats.sketch import ALPHA
from aimp_stats.store import EventStore, stats_engine

NOW = time.time()
#: Thirty minutes ago, on a minute boundary.
T0 = float(int(NOW // 60 * 60) - 1800)


def ev(event_id: str, **kw: object) -> RequestEvent:
    fields: dict[str, object] = {
        "event_id": event_id,
        "ts": T0 + 1,
        "trace_id": "t",
        "request_id": "r",
        "client_id": "app",
        "service": "svc",
        "status": 200,
        "latency_ms": 1.0,
        "upstream_ms": 0.5,
        "bytes_in": 1,
        "bytes_out": 2,
        "outcome": "ok",
    }
    fields.update(kw)
    return RequestEvent.model_validate(fields)


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    s = EventStore(stats_engine(f"sqlite:///{tmp_path / 'stats.db'}"))
    s.create_schema()
    return s


def close(estimate: float | None, exact: float | None) -> bool:
    return estimate is not None and exact is not None and abs(estimate - exact) <= ALPHA * exact


def test_ingest_skips_stored_events(store: EventStore) -> None:
    """A replayed event adds no row and no count; the result says how many were new."""
    assert store.ingest([ev("a"), ev("b")]).added == 2
    result = store.ingest([ev("b"), ev("c"), ev("c")])
    assert (result.added, result.duplicates) == (1, 2)
    usage = store.usage(UsageFilter())
    assert (usage.requests, usage.errors) == (3, 0)


def test_ingest_is_atomic(store: EventStore) -> None:
    """When the bucket write fails nothing is stored, so a retry counts the events once."""
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE buckets_1h RENAME TO parked"))
    with pytest.raises(OperationalError):
        store.ingest([ev("a")])
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE parked RENAME TO buckets_1h"))
    assert store.usage(UsageFilter()).requests == 0
    assert store.ingest([ev("a")]).added == 1
    assert store.usage(UsageFilter()).requests == 1


def test_usage_counts_errors_throttled_and_filters(store: EventStore) -> None:
    """Errors are status >= 500, throttled is 429, and every filter narrows the calls."""
    store.ingest(
        [
            ev("1", status=200, ts=T0 + 100, latency_ms=10),
            ev("2", status=503, ts=T0 + 200, latency_ms=30),
            ev("3", status=429, ts=T0 + 300, latency_ms=1, client_id="other"),
            ev("4", status=404, ts=T0 + 400, latency_ms=20, service="else"),
            ev("5", status=500, ts=T0 + 500, latency_ms=40),
        ]
    )
    u = store.usage(UsageFilter())
    assert (u.requests, u.errors, u.throttled) == (5, 2, 1)
    assert close(u.p50_ms, 20) and close(u.p99_ms, 40)
    assert store.usage(UsageFilter(service="svc")).requests == 4
    assert store.usage(UsageFilter(client_id="other")).throttled == 1
    assert store.usage(UsageFilter(since=T0 + 200, until=T0 + 500)).requests == 3  # 200..400
    u = store.usage(UsageFilter(service="nothing"))
    assert (u.requests, u.errors, u.throttled, u.p50_ms, u.p99_ms) == (0, 0, 0, None, None)


def test_exact_to_the_second_within_raw_retention_else_whole_buckets(tmp_path: Path) -> None:
    """Recent ranges are exact; older ones are rounded down to minute buckets."""
    retention = Retention(raw_s=600, minute_s=7 * 86400, hour_s=90 * 86400, day_s=730 * 86400)
    store = EventStore(stats_engine(f"sqlite:///{tmp_path / 's.db'}"), retention)
    store.create_schema()
    store.ingest([ev(f"e{i}", ts=T0 + i) for i in range(60)])  # one per second of a minute
    # T0 is 30 min ago: older than the 10 min of raw calls, so whole minutes are counted.
    assert store.usage(UsageFilter(since=T0 + 10, until=T0 + 70)).requests == 60
    assert store.usage(UsageFilter(since=T0 + 10, until=T0 + 50)).requests == 0
    recent = EventStore(store.engine)  # 24 h of raw calls: the same ranges are exact
    assert recent.usage(UsageFilter(since=T0 + 10, until=T0 + 70)).requests == 50
    assert recent.usage(UsageFilter(since=T0 + 10, until=T0 + 50)).requests == 40


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    latencies=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=80),
    spread_s=st.integers(min_value=1, max_value=7200),
)
def test_percentiles_over_raw_and_buckets_are_within_alpha(
    store: EventStore, latencies: list[int], spread_s: int
) -> None:
    """Mixing raw edges and minute/hour buckets keeps p50 and p99 within 1 % of exact."""
    with store.engine.begin() as conn:
        for table in ("request_events", "call_blocks", "buckets_1m", "buckets_1h", "buckets_1d"):
            conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608
    start = NOW - 3 * 3600 + 7.5
    events = [
        ev(f"e{i}", latency_ms=float(v), ts=start + i * spread_s / len(latencies))
        for i, v in enumerate(latencies)
    ]
    store.ingest(events)
    u = store.usage(UsageFilter(since=start, until=start + spread_s))
    ordered = sorted(float(v) for v in latencies)
    assert u.requests == len(latencies)
    for got, percent in ((u.p50_ms, 50), (u.p99_ms, 99)):
        exact = percentile(ordered, percent)
        assert exact is not None and got is not None
        assert abs(got - exact) <= ALPHA * exact + 1e-9


def test_lookup_by_request_and_trace_id(store: EventStore) -> None:
    """A call is found by its request id (latest first) and a trace lists its calls in order."""
    store.ingest([ev("a", request_id="req-1", trace_id="tr-1", ts=T0 + 5)])
    store.ingest([ev("b", request_id="req-2", trace_id="tr-1", ts=T0 + 3)])
    store.ingest([ev("c", request_id="req-1", trace_id="tr-2", ts=T0 + 9, status=503)])
    found = store.call_by_request_id("req-1")
    assert found is not None and found.fields["event_id"] == "c"
    assert found.fields["stored_at"] >= NOW - 5
    assert [c.fields["event_id"] for c in store.calls_by_trace_id("tr-1")] == ["b", "a"]
    assert store.call_by_request_id("nope") is None


def test_expiry_deletes_by_age_per_table(store: EventStore) -> None:
    """Raw calls expire after a day of storage; buckets after their own retention."""
    old = NOW - 8 * 86400
    store.ingest([ev("old", ts=old)], stored_at=NOW - 2 * 86400)
    store.ingest([ev("new", ts=T0)])
    deleted = store.expire(NOW)
    assert deleted["request_events"] == 1
    assert deleted["buckets_1m"] == 1  # the 8-day-old minute; its hour and day stay
    assert deleted["buckets_1h"] == deleted["buckets_1d"] == 0
    assert store.call_by_request_id("r") is not None  # the new one
    assert store.usage(UsageFilter(since=old - 86400, until=old + 86400)).requests == 1


def test_large_batches_are_stored(store: EventStore) -> None:
    """More events than one SQL statement may bind are all stored and counted once."""
    events = [ev(f"e{i}", ts=T0 + i / 1000) for i in range(2500)]
    assert store.ingest(events).added == 2500
    assert store.ingest(events).added == 0
    assert store.usage(UsageFilter()).requests == 2500


def test_pre_bucket_table_is_migrated(tmp_path: Path) -> None:
    """Rows of the old one-row-per-event table are moved into the bucketed schema."""
    engine = stats_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE request_events (event_id VARCHAR(128) PRIMARY KEY, ts FLOAT, "
            "trace_id TEXT, request_id TEXT, client_id TEXT, service TEXT, revision TEXT, "
            "instance_id TEXT, status INT, latency_ms FLOAT, upstream_ms FLOAT, bytes_in INT, "
            "bytes_out INT, outcome TEXT)"
        )
        conn.exec_driver_sql(
            "INSERT INTO request_events VALUES ('x', ?, 't', 'r', 'c', 's', '', '', 500, 2.0, "
            "1.0, 1, 1, 'upstream_error')",
            (T0,),
        )
    store = EventStore(engine)
    store.create_schema()
    u = store.usage(UsageFilter())
    assert (u.requests, u.errors) == (1, 1)
