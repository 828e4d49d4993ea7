"""One limit as the algorithm sees it: integers in microseconds and calls.

A limit combines a GCRA rate (one call per ``interval_us``, ``burst`` at
once), an optional warm-up ramp, UTC daily and monthly quotas and a cap on
calls in flight. Zero means "no such limit" for every field but ``burst``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from fractions import Fraction

from aimp_core.ratelimit.calendar import US_PER_S

#: The slowest rate a limit may have: one call per 1000 s. Together with
#: MAX_BURST this keeps every product (burst * interval) below 2**53, where
#: Lua's doubles still hold integers exactly.
MIN_RATE_PER_S = 0.001
MAX_RATE_PER_S = 1_000_000.0
MAX_BURST = 1_000_000
MAX_QUOTA = 10**12
MAX_CONCURRENCY = 1_000_000
MAX_WARMUP_S = 3600.0
MAX_COLD_FACTOR = 10.0
#: Sentinel's default: a cold service starts at a third of its rate.
DEFAULT_COLD_FACTOR = 3.0


class Kind(IntEnum):
    """Which part of a limit refused a call."""

    RATE = 1
    DAY = 2
    MONTH = 3
    CONCURRENCY = 4


@dataclass(frozen=True)
class LimitSpec:
    """The numbers of one limit, exactly as the Lua script receives them."""

    interval_us: int
    burst: int
    #: Ramp length; 0 means no warm-up.
    warmup_us: int = 0
    #: A cold limit starts at ``rate / (cold_milli / 1000)``.
    cold_milli: int = 3000
    #: An explicit ramp start (e.g. a service was just scaled); 0 means none.
    warm_epoch_us: int = 0
    quota_day: int = 0
    quota_month: int = 0
    concurrency: int = 0

    @classmethod
    def of(
        cls,
        rate_per_s: float,
        burst: int,
        *,
        quota_day: int | None = None,
        quota_month: int | None = None,
        concurrency: int | None = None,
        warmup_s: float | None = None,
        cold_factor: float = DEFAULT_COLD_FACTOR,
        warm_epoch_s: float | None = None,
    ) -> LimitSpec:
        """A spec from policy units (calls per second, seconds); validates the ranges."""
        if not MIN_RATE_PER_S <= rate_per_s <= MAX_RATE_PER_S:
            raise ValueError(f"rate must be {MIN_RATE_PER_S}..{MAX_RATE_PER_S} calls per second")
        if not 1 <= burst <= MAX_BURST:
            raise ValueError(f"burst must be 1..{MAX_BURST}")
        if not 1.0 <= cold_factor <= MAX_COLD_FACTOR:
            raise ValueError(f"cold_factor must be 1..{MAX_COLD_FACTOR}")
        # Exact arithmetic, rounded up: the effective rate never exceeds the configured one.
        interval = max(1, math.ceil(Fraction(US_PER_S) / Fraction(rate_per_s)))
        return cls(
            interval_us=interval,
            burst=burst,
            warmup_us=round((warmup_s or 0.0) * US_PER_S),
            cold_milli=round(cold_factor * 1000),
            warm_epoch_us=round((warm_epoch_s or 0.0) * US_PER_S),
            quota_day=quota_day or 0,
            quota_month=quota_month or 0,
            concurrency=concurrency or 0,
        )

    @property
    def capacity_us(self) -> int:
        """The bucket in time units: ``burst`` calls of full-rate cost."""
        return self.burst * self.interval_us

    def scaled(self, members: int) -> LimitSpec:
        """This limit's share on one of ``members`` processes (local fail-open limiter)."""
        members = max(1, members)
        return LimitSpec(
            interval_us=self.interval_us * members,
            burst=max(1, math.ceil(self.burst / members)),
            warmup_us=self.warmup_us,
            cold_milli=self.cold_milli,
            warm_epoch_us=self.warm_epoch_us,
            # Quotas need the shared count; during an outage the scaled rate guards them.
            quota_day=0,
            quota_month=0,
            concurrency=max(1, math.ceil(self.concurrency / members)) if self.concurrency else 0,
        )

    def argv(self) -> tuple[int, ...]:
        """The script's eight arguments for this limit, in order."""
        return (
            self.interval_us,
            self.burst,
            self.warmup_us,
            self.cold_milli,
            self.warm_epoch_us,
            self.quota_day,
            self.quota_month,
            self.concurrency,
        )


#: Arguments per limit in the check script.
ARGS_PER_LIMIT = 8
