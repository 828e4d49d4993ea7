"""The SQL adapter against a real temporary SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimp_core.db import make_engine
from aimp_core.events import RequestEvent
from aimp_stats.domain import UsageFilter, percentile
from aimp_stats.store import EventStore


def ev(event_id: str, **kw: object) -> RequestEvent:
    fields: dict[str, object] = {
        "event_id": event_id,
        "ts": 1000.0,
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
    s = EventStore(make_engine(f"sqlite:///{tmp_path / 'stats.db'}"))
    s.create_schema()
    return s


def test_insert_ignores_stored_event_ids(store: EventStore) -> None:
    """A replayed event id adds no row, and the count of added rows says so."""
    assert store.insert_events([ev("a"), ev("b")]) == 2
    assert store.insert_events([ev("b", status=500), ev("c")]) == 1
    assert store.usage(UsageFilter()).requests == 3
    assert store.usage(UsageFilter()).errors == 0  # the first "b" (200) is kept


def test_usage_counts_errors_throttled_and_filters(store: EventStore) -> None:
    """Errors are status >= 500, throttled is 429, and every filter narrows the calls."""
    store.insert_events(
        [
            ev("1", status=200, ts=100, latency_ms=10),
            ev("2", status=503, ts=200, latency_ms=30),
            ev("3", status=429, ts=300, latency_ms=1, client_id="other"),
            ev("4", status=404, ts=400, latency_ms=20, service="else"),
            ev("5", status=500, ts=500, latency_ms=40),
        ]
    )
    u = store.usage(UsageFilter())
    assert (u.requests, u.errors, u.throttled, u.p50_ms, u.p99_ms) == (5, 2, 1, 20, 40)
    assert store.usage(UsageFilter(service="svc")).requests == 4
    assert store.usage(UsageFilter(client_id="other")).throttled == 1
    assert store.usage(UsageFilter(since=200, until=500)).requests == 3  # 200, 300, 400
    u = store.usage(UsageFilter(service="nothing"))
    assert (u.requests, u.errors, u.throttled, u.p50_ms, u.p99_ms) == (0, 0, 0, None, None)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(latencies=st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=60))
def test_sql_percentiles_equal_the_pure_function(store: EventStore, latencies: list[int]) -> None:
    """The SQL lookup by rank gives the same p50 and p99 as the pure percentile."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM request_events")
    store.insert_events([ev(f"e{i}", latency_ms=float(v)) for i, v in enumerate(latencies)])
    u = store.usage(UsageFilter())
    ordered = sorted(float(v) for v in latencies)
    assert (u.p50_ms, u.p99_ms) == (percentile(ordered, 50), percentile(ordered, 99))


def test_large_batches_are_split_into_several_statements(store: EventStore) -> None:
    """More rows than one statement may bind are all stored."""
    assert store.insert_events([ev(f"e{i}") for i in range(2500)]) == 2500
