"""Pure decisions of the stats service: event decoding, time parsing, percentiles.

Everything here takes values and returns values, so it is tested without a
broker or a database.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

from pydantic import ValidationError

from aimp_core.errors import BadRequest
from aimp_core.events import RequestEvent

#: HTTP status codes counted as errors (the server's fault, DESIGN.md's "errors").
ERROR_STATUS_MIN = 500
#: The status the gateway answers when a caller is throttled.
THROTTLED_STATUS = 429


# -- request events ------------------------------------------------------------------


#: Longest value of each text field that SQL stores (the column sizes). An event over a
#: limit is rejected here; otherwise PostgreSQL would refuse the whole batch forever.
TEXT_LIMITS: dict[str, int] = {
    "event_id": 128,
    "trace_id": 64,
    "request_id": 128,
    "client_id": 128,
    "service": 128,
    "revision": 128,
    "instance_id": 256,
    "outcome": 32,
}
#: BIGINT's upper bound, for the byte counters.
MAX_BYTES = 2**63 - 1


class InvalidEvent(ValueError):
    """A record on the requests topic that is not a valid :class:`RequestEvent`."""


def decode_event(value: bytes | None) -> RequestEvent:
    """The event in a Kafka record value, or :class:`InvalidEvent` saying what is wrong."""
    if value is None:
        raise InvalidEvent("the record has no value (a tombstone)")
    try:
        event = RequestEvent.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "value"
        raise InvalidEvent(
            f"{exc.error_count()} problem(s), first: {where}: {first.get('msg')}"
        ) from None
    check_storable(event)
    return event


def check_storable(event: RequestEvent) -> None:
    """Raise :class:`InvalidEvent` unless SQL can store every field of ``event`` as it is."""
    for name, limit in TEXT_LIMITS.items():
        if len(getattr(event, name)) > limit:
            raise InvalidEvent(f"{name} is longer than {limit} characters")
    if not event.event_id:
        raise InvalidEvent("event_id is empty")
    if not 100 <= event.status <= 599:
        raise InvalidEvent(f"status {event.status} is not an HTTP status (100-599)")
    for name in ("ts", "latency_ms", "upstream_ms"):
        number = getattr(event, name)
        if not math.isfinite(number) or number < 0:
            raise InvalidEvent(f"{name} must be a finite number >= 0, got {number}")
    for name in ("bytes_in", "bytes_out"):
        if not 0 <= getattr(event, name) <= MAX_BYTES:
            raise InvalidEvent(f"{name} must be within 0..{MAX_BYTES}")


def unique_by_event_id(events: Iterable[RequestEvent]) -> list[RequestEvent]:
    """The events with repeated ``event_id`` dropped, first occurrence kept, order kept."""
    seen: set[str] = set()
    out: list[RequestEvent] = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.append(event)
    return out


# -- time parameters -----------------------------------------------------------------


def parse_instant(value: str, name: str) -> float:
    """Unix seconds from ``value``: a number of seconds, or ISO-8601 (naive means UTC).

    Raises :class:`BadRequest` naming the parameter ``name`` when it is neither.
    """
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise BadRequest(f"{name} must be a finite number of unix seconds, got {value!r}")
        return seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{name} must be unix seconds (e.g. 1700000000) or ISO-8601 "
            f"(e.g. 2024-01-31T12:00:00Z), got {value[:64]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class UsageFilter:
    """Which calls a usage question is about; ``None`` means no restriction."""

    service: str | None = None
    client_id: str | None = None
    #: Inclusive lower bound, unix seconds.
    since: float | None = None
    #: Exclusive upper bound, unix seconds.
    until: float | None = None


def usage_filter(
    service: str | None, client_id: str | None, since: str | None, until: str | None
) -> UsageFilter:
    """Build a filter from query parameters; 400 naming the parameter that is wrong."""
    start = parse_instant(since, "since") if since is not None else None
    end = parse_instant(until, "until") if until is not None else None
    if start is not None and end is not None and start > end:
        raise BadRequest(f"since ({since}) is after until ({until}); swap them or widen the range")
    return UsageFilter(service=service or None, client_id=client_id or None, since=start, until=end)


# -- percentiles ---------------------------------------------------------------------


def nearest_rank(count: int, percent: float) -> int:
    """The 1-based nearest rank of the ``percent`` percentile among ``count`` values.

    ``ceil(percent / 100 * count)``, at least 1; computed on the decimal value of
    ``percent`` so that 99 % of 100 is exactly rank 99 (no binary float error).
    """
    if count < 1:
        raise ValueError("nearest rank needs at least one value")
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be within 0..100, got {percent}")
    exact = Fraction(str(percent)) * count / 100
    return max(1, math.ceil(exact))


def percentile(sorted_values: Sequence[float], percent: float) -> float | None:
    """Nearest-rank percentile of values sorted ascending; ``None`` when there are none."""
    if not sorted_values:
        return None
    return sorted_values[nearest_rank(len(sorted_values), percent) - 1]
