"""Unit tests of backflow's pure parts: record validation, redaction, the file layout."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_stats.backflow_domain import (
    InvalidRecord,
    check_redact_path,
    dates_in_range,
    decode_record,
    next_part_number,
    part_name,
    part_number,
    partition_date,
    redact,
)


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_id": "r1",
        "trace_id": "t1",
        "ts": 1_700_000_000.0,
        "service": "iris",
        "revision": "r1",
        "client_id": "app",
        "status": 200,
        "request": {
            "content_type": "application/json",
            "encoding": "json",
            "size": 10,
            "body": {"user": {"email": "a@b.c", "name": "A"}, "inputs": [{"data": [1], "x": 1}]},
        },
        "response": {"content_type": "text/plain", "encoding": "base64", "size": 2, "body": "aGk="},
    }
    return {**base, **overrides}


def test_decode_record_accepts_a_valid_record() -> None:
    """A valid record decodes to the same dict."""
    value = record()
    assert decode_record(json.dumps(value).encode()) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"{}", "problem"),
        (json.dumps(record(service="../etc")).encode(), "not a valid service name"),
        (json.dumps(record(service="a/b")).encode(), "not a valid service name"),
        (json.dumps(record(service="x..y")).encode(), "not a valid service name"),
        (json.dumps(record(ts=-1)).encode(), "ts must be"),
        (json.dumps(record(request={"encoding": "gzip"})).encode(), "encoding"),
    ],
)
def test_decode_record_rejects_malformed_or_unsafe_values(value: bytes | None, reason: str) -> None:
    """Malformed records, and service names that could escape the directory, are refused."""
    with pytest.raises(InvalidRecord, match=reason):
        decode_record(value)


def test_redact_removes_named_fields_and_keeps_the_rest() -> None:
    """Paths remove exactly the named keys, '*' going through every list element."""
    out = redact(record(), ["request.body.user.email", "request.body.inputs.*.data", "client_id"])
    assert out["request"]["body"] == {"user": {"name": "A"}, "inputs": [{"x": 1}]}
    assert "client_id" not in out
    assert out["response"] == record()["response"]
    assert record()["request"]["body"]["user"]["email"] == "a@b.c"  # the input is untouched


def test_redact_into_a_non_json_body_drops_the_body() -> None:
    """A path into a base64 body cannot find its field, so the whole body goes."""
    out = redact(record(), ["response.body.secret"])
    assert out["response"]["body"] is None
    assert out["response"]["encoding"] == "none" and out["response"]["skipped"] == "redacted"


def test_redact_list_index_and_missing_paths() -> None:
    """A digit indexes a list; a path that matches nothing changes nothing."""
    value = record(request={"encoding": "json", "body": {"a": [1, 2, 3]}})
    assert redact(value, ["request.body.a.1"])["request"]["body"] == {"a": [1, 3]}
    assert redact(value, ["request.body.nope.x", "request.body.a.9"]) == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "secret", "c"]), children, max_size=4)
    ),
    max_leaves=25,
)


def _has_key(value: Any, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_has_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(_has_key(v, key) for v in value)
    return False


def _strip(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_strip(v, key) for v in value]
    return value


@given(body=json_values)
def test_redact_at_every_depth_matches_a_recursive_strip(body: Any) -> None:
    """'secret' under any number of '*' levels is removed, and nothing else changes."""
    value = record(request={"encoding": "json", "body": body})
    paths = ["request.body." + ".".join(["*"] * depth + ["secret"]) for depth in range(8)]
    paths.append("request.body.secret")
    out = redact(value, paths)
    assert not _has_key(out["request"]["body"], "secret")
    assert out["request"]["body"] == _strip(body, "secret")


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a b", "a/b", "x" * 300])
def test_bad_redaction_paths_are_refused(path: str) -> None:
    """Paths must be dot-separated keys; the error says what a path looks like."""
    with pytest.raises(ValueError, match="dot-separated keys"):
        check_redact_path(path)


def test_part_names_and_numbers() -> None:
    """Parts are numbered from 0 with four digits, the next one after the highest."""
    assert part_name(7) == "part-0007.jsonl.gz" and part_number("part-0007.jsonl.gz") == 7
    assert part_number("part-7.jsonl.gz") is None and part_number("other") is None
    assert next_part_number([]) == 0
    assert next_part_number(["part-0000.jsonl.gz", "part-0003.jsonl.gz", "x"]) == 4
    assert next_part_number([part_name(12345)]) == 12346


def test_partition_date_is_utc() -> None:
    """A call is filed under its UTC date."""
    assert partition_date(1_700_000_000) == "2023-11-14"
    assert partition_date(1_699_919_999.9) == "2023-11-13"


def test_dates_in_range_selects_overlapping_days() -> None:
    """Only days that can hold since <= ts < until are read; an exclusive midnight excludes."""
    days = ["2023-11-13", "2023-11-14", "2023-11-15", "junk"]
    midnight_15 = 1_700_006_400.0  # 2023-11-15T00:00:00Z
    assert dates_in_range(days, None, None) == days[:3]
    assert dates_in_range(days, 1_700_000_000, midnight_15) == ["2023-11-14"]
    assert dates_in_range(days, midnight_15, None) == ["2023-11-15"]
    assert dates_in_range(days, None, 1_699_920_000) == ["2023-11-13"]
