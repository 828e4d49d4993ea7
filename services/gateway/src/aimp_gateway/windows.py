"""Sliding windows of call outcomes for the breaker and the retry budget (pure, no clock).

Two kinds, as in Resilience4j:

- :class:`CountWindow`: the last ``size`` calls (a ring buffer).
- :class:`SecondsWindow`: the calls of the last ``size_s`` seconds, kept as one
  bucket of counters per whole second of the caller's clock. A call at time ``t``
  is in the window at time ``now`` while ``floor(t) > floor(now) - size_s``, so
  the window holds between ``size_s - 1`` and ``size_s`` seconds of calls, and
  memory stays bounded by ``size_s`` buckets whatever the traffic.

Both keep running totals, so reading them costs O(1) (plus dropping the buckets
that fell out of a seconds window).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Totals:
    """Calls in a window, and how many of them failed and how many were slow."""

    calls: int = 0
    failed: int = 0
    slow: int = 0

    @property
    def failure_rate_percent(self) -> float:
        return 100.0 * self.failed / self.calls if self.calls else 0.0

    @property
    def slow_rate_percent(self) -> float:
        return 100.0 * self.slow / self.calls if self.calls else 0.0


class CountWindow:
    """The outcomes of the last ``size`` calls."""

    __slots__ = ("_calls", "_failed", "_ring", "_slow", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a count window needs a size of at least 1 call, not {size}")
        self.size = size
        self._ring: deque[tuple[bool, bool]] = deque()
        self._calls = self._failed = self._slow = 0

    def record(self, failed: bool, slow: bool, now: float) -> tuple[int, int, int]:
        """Add one outcome (``now`` is unused: counts do not age); returns the new
        (calls, failed, slow)."""
        ring = self._ring
        if len(ring) == self.size:
            old_failed, old_slow = ring.popleft()
            self._calls -= 1
            self._failed -= old_failed
            self._slow -= old_slow
        ring.append((failed, slow))
        self._calls += 1
        self._failed += failed
        self._slow += slow
        return self._calls, self._failed, self._slow

    def totals(self, now: float) -> Totals:
        return Totals(self._calls, self._failed, self._slow)


class SecondsWindow:
    """Counters of the last ``size_s`` whole seconds, any number of them per bucket.

    ``fields`` names how many counters each bucket holds (the breaker uses three:
    calls, failed, slow; the retry budget two: requests, retries).
    """

    __slots__ = ("_buckets", "_sums", "fields", "size_s")

    def __init__(self, size_s: int, fields: int = 3) -> None:
        if size_s < 1:
            raise ValueError(f"a time window needs at least 1 second, not {size_s}")
        self.size_s = size_s
        self.fields = fields
        #: (second, counters) oldest first; at most ``size_s`` of them.
        self._buckets: deque[tuple[int, list[int]]] = deque()
        self._sums = [0] * fields

    def _expire(self, second: int) -> None:
        oldest_kept = second - self.size_s + 1
        buckets, sums = self._buckets, self._sums
        while buckets and buckets[0][0] < oldest_kept:
            _, counts = buckets.popleft()
            for i, count in enumerate(counts):
                sums[i] -= count

    def add(self, now: float, counts: tuple[int, ...]) -> list[int]:
        """Add ``counts`` (one per field) at time ``now``; returns the sums (do not keep)."""
        second = math.floor(now)
        buckets = self._buckets
        if buckets and buckets[0][0] <= second - self.size_s:
            self._expire(second)
        # A clock that went back a little lands in the newest bucket (never in a lost one).
        if buckets and buckets[-1][0] >= second:
            bucket = buckets[-1][1]
        else:
            bucket = [0] * self.fields
            buckets.append((second, bucket))
        sums = self._sums
        for i, count in enumerate(counts):
            if count:
                bucket[i] += count
                sums[i] += count
        return sums

    def sums(self, now: float) -> tuple[int, ...]:
        """Each field's total over the window as seen at ``now``."""
        self._expire(math.floor(now))
        return tuple(self._sums)


class TimeWindow:
    """The outcomes of the calls of the last ``size_s`` seconds (Resilience4j's time window)."""

    __slots__ = ("_window",)

    def __init__(self, size_s: int) -> None:
        self._window = SecondsWindow(size_s, fields=3)

    def record(self, failed: bool, slow: bool, now: float) -> tuple[int, int, int]:
        """Add one outcome at ``now``; returns the window's (calls, failed, slow)."""
        calls, failures, slows = self._window.add(now, (1, failed, slow))
        return calls, failures, slows

    def totals(self, now: float) -> Totals:
        calls, failed, slow = self._window.sums(now)
        return Totals(calls, failed, slow)


Window = CountWindow | TimeWindow
