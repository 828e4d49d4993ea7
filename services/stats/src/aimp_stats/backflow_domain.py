"""Pure decisions of data backflow: the record shape, redaction and the file layout.

A backflow record is one sampled gateway call, as the gateway publishes it on
``aimp.backflow.v1``::

    {"request_id", "trace_id", "ts", "service", "revision", "client_id", "status",
     "request":  {"content_type", "encoding": "json" | "base64" | "none", "size", "body"},
     "response": {... the same ...}}

``encoding`` says how ``body`` holds the payload: decoded JSON, base64 of the raw
bytes, or nothing (``none``: empty, or larger than the gateway's cap, then ``skipped``
says why). Files live at ``<root>/<service>/<YYYY-MM-DD>/part-NNNN.jsonl.gz`` (UTC
date of the call).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

#: Service names double as directory names, so only these are accepted (no path tricks).
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
PART_NAME = re.compile(r"^part-(\d{4,})\.jsonl\.gz$")
#: One redaction path: dot-separated keys, ``*`` for every key or element, digits index.
REDACT_PATH = re.compile(r"^[A-Za-z0-9_\-*]+(\.[A-Za-z0-9_\-*]+)*$")
#: Where the payloads sit in a record; a path into a payload that is not JSON drops it.
PAYLOADS = ("request", "response")


class InvalidRecord(ValueError):
    """A value on the backflow topic that is not a valid record."""


class Payload(BaseModel):
    content_type: str = ""
    encoding: Literal["json", "base64", "none"]
    size: int = 0
    body: Any = None
    skipped: str | None = None


class BackflowRecord(BaseModel):
    request_id: str
    trace_id: str = ""
    ts: float
    service: str
    revision: str = ""
    client_id: str = ""
    status: int
    request: Payload
    response: Payload


def decode_record(value: bytes | None) -> dict[str, Any]:
    """The record in a Kafka value (as a plain dict), or :class:`InvalidRecord`."""
    if value is None:
        raise InvalidRecord("the record has no value (a tombstone)")
    try:
        record = BackflowRecord.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "value"
        raise InvalidRecord(
            f"{exc.error_count()} problem(s), first: {where}: {first.get('msg')}"
        ) from None
    if not SERVICE_NAME.fullmatch(record.service) or ".." in record.service:
        raise InvalidRecord(f"service {record.service[:64]!r} is not a valid service name")
    if not math.isfinite(record.ts) or record.ts < 0:
        raise InvalidRecord("ts must be a finite number of unix seconds >= 0")
    data: dict[str, Any] = json.loads(value)
    return data


# -- redaction -----------------------------------------------------------------------------


def check_redact_path(path: str) -> str:
    """``path`` if it is a valid redaction path, else ValueError saying what a path is."""
    if not REDACT_PATH.fullmatch(path) or len(path) > 256:
        raise ValueError(
            f"redaction path {path[:64]!r} must be dot-separated keys such as "
            "'request.body.user.email' or 'response.body.outputs.*.data' ('*' matches every "
            "key or list element, digits index a list)"
        )
    return path


def redact(record: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """A copy of ``record`` with every field that a path names removed.

    A path that reaches into a payload that is not JSON (``request.body.x`` on a base64
    body) removes that whole body: its fields cannot be found, so nothing of it is kept.
    """
    if not paths:
        return record
    out: dict[str, Any] = json.loads(json.dumps(record))
    for path in paths:
        keys = path.split(".")
        if len(keys) > 2 and keys[0] in PAYLOADS and keys[1] == "body":
            payload = out.get(keys[0])
            if isinstance(payload, dict) and payload.get("encoding") != "json":
                if payload.get("body") is not None:
                    payload["body"] = None
                    payload["encoding"] = "none"
                    payload["skipped"] = "redacted"
                continue
        _remove(out, keys)
    return out


def _remove(node: Any, keys: list[str]) -> None:
    head, rest = keys[0], keys[1:]
    if isinstance(node, dict):
        names = list(node) if head == "*" else [head] if head in node else []
        for name in names:
            if rest:
                _remove(node[name], rest)
            else:
                del node[name]
    elif isinstance(node, list):
        if head == "*":
            indexes = list(range(len(node)))
        elif head.isdigit() and int(head) < len(node):
            indexes = [int(head)]
        else:
            indexes = []
        if rest:
            for i in indexes:
                _remove(node[i], rest)
        else:
            for i in reversed(indexes):
                del node[i]


# -- file layout --------------------------------------------------------------------------


def partition_date(ts: float) -> str:
    """The UTC date (``YYYY-MM-DD``) a call at ``ts`` is filed under."""
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def part_name(number: int) -> str:
    return f"part-{number:04d}.jsonl.gz"


def part_number(name: str) -> int | None:
    """The number of a part file's name, or None for any other name."""
    match = PART_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def next_part_number(names: Iterable[str]) -> int:
    """One more than the highest part number among ``names`` (0 when there is none)."""
    numbers = [n for n in (part_number(name) for name in names) if n is not None]
    return max(numbers, default=-1) + 1


def dates_in_range(available: Iterable[str], since: float | None, until: float | None) -> list[str]:
    """The date directories that can hold calls with ``since <= ts < until``, in order."""
    first = partition_date(since) if since is not None else None
    # The last second before ``until`` (whole seconds: sub-microsecond floats round up).
    last = partition_date(math.ceil(until) - 1) if until is not None else None
    chosen = []
    for name in available:
        try:
            date.fromisoformat(name)
        except ValueError:
            continue
        if (first is None or name >= first) and (last is None or name <= last):
            chosen.append(name)
    return sorted(chosen)


def in_range(ts: float, since: float | None, until: float | None) -> bool:
    return (since is None or ts >= since) and (until is None or ts < until)
