"""Eureka's self-preservation, as pure values and functions (clock passed in).

Eureka stops evicting when fewer renewals arrive than 85 % of those expected:
a network partition between clients and registry looks exactly like mass death,
and dropping every instance would be worse than serving a few stale ones.

- :class:`RenewalMeter` counts renewals over a sliding window (one-second buckets).
- :func:`expected_renewals` sums ``window / renewalInterval`` over the instances
  that have been registered, in this process, for at least a full window (a fresh
  instance, or one loaded after a restart, has not had time to renew yet).
- :func:`decide` says whether self-preservation is on.
- :func:`eviction_limit` is Eureka's cap on how many instances one sweep may evict.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


class RenewalMeter:
    """Renewals in the last ``window_s`` seconds, kept in one-second buckets."""

    def __init__(self, window_s: int = 60) -> None:
        self.window_s = window_s
        self._buckets: deque[list[int]] = deque()  # [second, count], oldest first

    def record(self, now_ms: int, amount: int = 1) -> None:
        second = now_ms // 1000
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += amount
        else:
            self._buckets.append([second, amount])
        self._trim(second)

    def count(self, now_ms: int) -> int:
        """Renewals recorded in the seconds ``(now - window, now]``."""
        self._trim(now_ms // 1000)
        return sum(c for _, c in self._buckets)

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self.window_s:
            self._buckets.popleft()


@dataclass(frozen=True)
class Expected:
    """What the registered instances should have sent in the last window."""

    renewals: float
    #: Instances registered for at least a full window (the ones counted).
    mature_instances: int


def expected_renewals(
    leases: Iterable[tuple[int, int]], *, now_ms: int, since_ms: int, window_s: int
) -> Expected:
    """Renewals expected in one window from ``(registration_ms, renewal_interval_s)`` pairs.

    ``since_ms`` is when this process started counting: an instance registered
    before then is counted from then, so a restart gap is never taken as missed
    renewals.
    """
    window_ms = window_s * 1000
    total = 0.0
    mature = 0
    for registration_ms, interval_s in leases:
        if now_ms - max(registration_ms, since_ms) >= window_ms and interval_s > 0:
            total += window_s / interval_s
            mature += 1
    return Expected(total, mature)


@dataclass(frozen=True)
class Preservation:
    """The self-preservation verdict and the figures behind it."""

    enabled: bool
    active: bool
    expected_renewals: float
    threshold: float
    renewals: int
    mature_instances: int


def decide(
    *,
    enabled: bool,
    ratio: float,
    expected: Expected,
    renewals: int,
    min_instances: int = 1,
) -> Preservation:
    """Self-preservation is active when enabled, at least ``min_instances`` instances
    are mature, and the renewals of the last window fall below ``ratio`` x expected."""
    threshold = expected.renewals * ratio
    active = (
        enabled
        and expected.mature_instances >= max(1, min_instances)
        and expected.renewals > 0
        and renewals < threshold
    )
    return Preservation(
        enabled=enabled,
        active=active,
        expected_renewals=expected.renewals,
        threshold=threshold,
        renewals=renewals,
        mature_instances=expected.mature_instances,
    )


def eviction_limit(registry_size: int, ratio: float) -> int:
    """Eureka's cap per sweep: evict at most ``size - int(size x ratio)`` instances
    (15 % with the default ratio), so a sudden mass expiry is spread over sweeps."""
    return registry_size - int(registry_size * ratio)
