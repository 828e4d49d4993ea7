"""Which stored data answers a time range (pure): recent raw calls, minute, hour, day buckets.

Every call is kept twice: as a raw row in ``request_events`` for ``calls``
retention (24 h by default), and in per-minute, per-hour and per-day buckets
(7 d, 90 d, 2 y by default). A range ``[since, until)`` is answered from:

- raw rows for its partial minutes at either end, when those are recent enough
  to still have raw rows, so short and recent windows are exact to the second;
- buckets for the whole minutes in between, using the coarsest tier that fits
  (whole days from day buckets, whole hours from hour buckets, the rest from
  minute buckets), which keeps long ranges cheap.

Where raw rows have expired, an end is rounded down to the finest tier that
still holds it: the minute within minute retention, else the hour, else the day
(with a margin of one coarser unit so a rounded range never reaches into
expired rows). A bucket is counted when its start lies in the rounded range.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from aimp_core.errors import BadRequest


class Tier(Enum):
    """A bucket size, in seconds, and its table's suffix."""

    MINUTE = 60
    HOUR = 3600
    DAY = 86400

    @property
    def seconds(self) -> int:
        return int(self.value)


#: Finest first.
TIERS = (Tier.MINUTE, Tier.HOUR, Tier.DAY)


def floor_to(t: float, size: int) -> int:
    return math.floor(t / size) * size


def ceil_to(t: float, size: int) -> int:
    return math.ceil(t / size) * size


@dataclass(frozen=True)
class Retention:
    """How long each kind of row is kept, seconds."""

    raw_s: float
    minute_s: float
    hour_s: float
    day_s: float

    def of(self, tier: Tier) -> float:
        return {Tier.MINUTE: self.minute_s, Tier.HOUR: self.hour_s, Tier.DAY: self.day_s}[tier]


@dataclass(frozen=True)
class Plan:
    """Raw ranges and bucket ranges (tier, start, end) that together cover a query."""

    raw: tuple[tuple[float, float], ...]
    buckets: tuple[tuple[Tier, int, int], ...]
    #: The range actually covered, after rounding ends that have no raw rows.
    since: float
    until: float


def finest_tier(t: float, now: float, retention: Retention) -> Tier:
    """The finest tier that still holds time ``t`` (with a margin of the next tier's size)."""
    if t >= now - retention.minute_s + Tier.HOUR.seconds:
        return Tier.MINUTE
    if t >= now - retention.hour_s + Tier.DAY.seconds:
        return Tier.HOUR
    return Tier.DAY


def plan_range(since: float | None, until: float | None, now: float, retention: Retention) -> Plan:
    """Split ``[since, until)`` into raw and bucket reads (see the module docstring)."""
    start = 0.0 if since is None else since
    # No until: everything up to now, from buckets (they are current: written at ingest).
    end = floor_to(now, Tier.MINUTE.seconds) + Tier.MINUTE.seconds if until is None else until
    raw: list[tuple[float, float]] = []
    raw_from = now - retention.raw_s
    if start >= raw_from:
        inner_start: float = ceil_to(start, Tier.MINUTE.seconds)
    else:
        start = inner_start = floor_to(start, finest_tier(start, now, retention).seconds)
    if end >= raw_from:
        inner_end: float = floor_to(end, Tier.MINUTE.seconds)
    else:
        end = inner_end = floor_to(end, finest_tier(end, now, retention).seconds)
    if end <= start:
        return Plan((), (), start, max(start, end))
    if inner_start >= inner_end:  # within one minute, or two partial ones
        return Plan(((start, end),), (), start, end)
    if start < inner_start:
        raw.append((start, inner_start))
    if inner_end < end:
        raw.append((inner_end, end))
    return Plan(tuple(raw), tuple(split(int(inner_start), int(inner_end))), start, end)


def split(start: int, end: int, tiers: tuple[Tier, ...] = TIERS) -> list[tuple[Tier, int, int]]:
    """Cover minute-aligned ``[start, end)`` with as few buckets as possible, in order."""
    if start >= end:
        return []
    *finer, coarsest = tiers
    if not finer:
        return [(coarsest, start, end)]
    a, b = ceil_to(start, coarsest.seconds), floor_to(end, coarsest.seconds)
    if a >= b:
        return split(start, end, tuple(finer))
    return [*split(start, a, tuple(finer)), (coarsest, a, b), *split(b, end, tuple(finer))]


# -- time series steps -----------------------------------------------------------------

_STEP = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The most points one time series answer may hold.
MAX_POINTS = 10_000


def parse_step(text: str) -> int:
    """Seconds in a step like ``60s``, ``5m``, ``1h`` or ``1d``; a whole number of minutes."""
    match = _STEP.match(text)
    if not match:
        raise BadRequest(f"step must look like 60s, 5m, 1h or 1d, got {text[:32]!r}")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0 or seconds % 60:
        raise BadRequest(f"step must be a positive whole number of minutes, got {text[:32]!r}")
    return seconds


def series_tier(step_s: int, since: float, now: float, retention: Retention) -> Tier:
    """The coarsest tier whose buckets tile ``step_s`` and that still holds ``since``."""
    for tier in reversed(TIERS):
        if step_s % tier.seconds == 0 and since >= now - retention.of(tier):
            return tier
    finest = finest_tier(since, now, retention)
    raise BadRequest(
        f"a step of {step_s} s reaches back only {retention.of(Tier.MINUTE) / 86400:g} days "
        f"(minute buckets' retention); use a step of whole {finest.name.lower()}s "
        "(e.g. 1h or 1d) or a later since"
    )


def series_points(since: float, until: float, step_s: int) -> list[int]:
    """Point starts (multiples of ``step_s`` since the epoch, UTC) covering the range."""
    first, last = floor_to(since, step_s), ceil_to(until, step_s)
    count = (last - first) // step_s
    if count > MAX_POINTS:
        raise BadRequest(
            f"{count} points of {step_s} s are more than {MAX_POINTS}; use a larger step "
            "or a shorter range"
        )
    return list(range(first, last, step_s))
