"""Unit tests of the pure stats decisions: percentiles, time parsing, event decoding."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.errors import BadRequest
from aimp_stats.domain import (
    InvalidEvent,
    decode_event,
    nearest_rank,
    parse_instant,
    percentile,
    unique_by_event_id,
    usage_filter,
)


def oracle(values: list[float], tenths_of_percent: int) -> float:
    """Textbook nearest rank: the smallest value with at least p% of all values <= it."""
    ordered = sorted(values)
    for v in ordered:
        at_or_below = sum(1 for x in ordered if x <= v)
        if at_or_below * 1000 >= tenths_of_percent * len(ordered):
            return v
    raise AssertionError("unreachable")


latencies = st.lists(
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)


@given(values=latencies, tenths=st.integers(min_value=0, max_value=1000))
def test_percentile_matches_sorted_list_oracle(values: list[float], tenths: int) -> None:
    """The nearest-rank percentile equals the oracle's for any data and any 0.1 % step."""
    assert percentile(sorted(values), tenths / 10) == oracle(values, tenths)


@given(values=latencies, p=st.floats(min_value=0, max_value=100))
def test_percentile_is_an_element_and_monotonic(values: list[float], p: float) -> None:
    """A percentile is always one of the values and never exceeds a higher percentile."""
    ordered = sorted(values)
    value = percentile(ordered, p)
    assert value in ordered
    assert value is not None and value <= (percentile(ordered, 100) or 0)


def test_percentile_examples() -> None:
    """Known answers: p50 of 1..10 is 5, p99 of 1..100 is 99, p99 of 1..10 is 10."""
    assert percentile([float(i) for i in range(1, 11)], 50) == 5
    assert percentile([float(i) for i in range(1, 101)], 99) == 99
    assert percentile([float(i) for i in range(1, 11)], 99) == 10
    assert percentile([7.0], 0) == 7.0


def test_percentile_of_nothing_is_none() -> None:
    """With no calls there is no latency percentile."""
    assert percentile([], 50) is None


def test_nearest_rank_rejects_bad_inputs() -> None:
    """Ranks need at least one value and a percent within 0..100."""
    with pytest.raises(ValueError):
        nearest_rank(0, 50)
    with pytest.raises(ValueError):
        nearest_rank(10, 100.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000", 1700000000.0),
        ("1700000000.25", 1700000000.25),
        ("2023-11-14T22:13:20Z", 1700000000.0),
        ("2023-11-14T22:13:20+00:00", 1700000000.0),
        ("2023-11-14T23:13:20+01:00", 1700000000.0),
        ("2023-11-14T22:13:20", 1700000000.0),
        ("2023-11-14", 1699920000.0),
    ],
)
def test_parse_instant_accepts_unix_seconds_and_iso(text: str, expected: float) -> None:
    """Unix seconds and ISO-8601 (naive meaning UTC) parse to the same instant."""
    assert parse_instant(text, "since") == expected


@pytest.mark.parametrize("text", ["yesterday", "", "nan", "inf", "2023-13-01", "12:00"])
def test_parse_instant_rejects_other_text_naming_the_parameter(text: str) -> None:
    """Anything else is a 400 whose detail names the parameter."""
    with pytest.raises(BadRequest, match=r"^until must be"):
        parse_instant(text, "until")


def test_usage_filter_rejects_reversed_range() -> None:
    """since after until is a 400 naming both parameters."""
    with pytest.raises(BadRequest, match=r"since .* is after until"):
        usage_filter(None, None, "200", "100")


def test_usage_filter_treats_empty_names_as_no_filter() -> None:
    """An empty service or client_id means all, like a missing one."""
    flt = usage_filter("", "", "100", None)
    assert (flt.service, flt.client_id, flt.since, flt.until) == (None, None, 100.0, None)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e1",
        "ts": 1700000000.0,
        "trace_id": "t",
        "request_id": "r",
        "client_id": "c",
        "service": "s",
        "status": 200,
        "latency_ms": 3.5,
        "upstream_ms": 2.0,
        "bytes_in": 10,
        "bytes_out": 20,
        "outcome": "ok",
    }
    return {**base, **overrides}


def test_decode_event_accepts_a_valid_event() -> None:
    """A valid JSON event decodes with its fields."""
    decoded = decode_event(json.dumps(event(status=503)).encode())
    assert (decoded.event_id, decoded.status, decoded.latency_ms) == ("e1", 503, 3.5)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"not json", "1 problem"),
        (json.dumps(event(status="x")).encode(), "status"),
        (json.dumps(event(outcome="weird")).encode(), "outcome"),
        (json.dumps({k: v for k, v in event().items() if k != "event_id"}).encode(), "event_id"),
        (b"[1, 2]", "problem"),
        (json.dumps(event(event_id="x" * 129)).encode(), "event_id is longer than 128"),
        (json.dumps(event(event_id="")).encode(), "event_id is empty"),
        (json.dumps(event(status=0)).encode(), "not an HTTP status"),
        (json.dumps(event(latency_ms=-1)).encode(), "latency_ms must be a finite"),
        (json.dumps(event(upstream_ms=float("nan"))).encode(), "upstream_ms must be a finite"),
        (json.dumps(event(bytes_out=2**63)).encode(), "bytes_out must be within"),
    ],
)
def test_decode_event_rejects_malformed_values(value: bytes | None, reason: str) -> None:
    """Malformed values raise InvalidEvent saying what is wrong."""
    with pytest.raises(InvalidEvent, match=reason):
        decode_event(value)


def test_unique_by_event_id_keeps_first_occurrence() -> None:
    """Repeated event ids inside one batch are stored once."""
    batch = [
        decode_event(json.dumps(event(event_id=i, status=s)).encode())
        for i, s in [("a", 200), ("b", 200), ("a", 500)]
    ]
    assert [(e.event_id, e.status) for e in unique_by_event_id(batch)] == [("a", 200), ("b", 200)]
