"""A mergeable latency sketch with a stated relative error (DDSketch-style log buckets).

A value ``x`` (milliseconds) above :data:`MIN_MS` falls in bucket
``k = ceil(log(x) / log(GAMMA))`` with ``GAMMA = (1 + ALPHA) / (1 - ALPHA)``, so
bucket ``k`` covers ``(GAMMA**(k-1), GAMMA**k]``; reporting ``2 * GAMMA**k /
(GAMMA + 1)`` for it is within ``ALPHA`` (1 %) of every value inside. A sketch is
only counts per bucket, so two sketches merge by adding counts: merging is exact,
associative and commutative, and the sketch of a union equals the merge of the
sketches. That lets per-minute buckets be rolled into hours, days and any query
range without losing accuracy.

Quantiles use the nearest rank (``ceil(p/100 * n)``, DESIGN.md's usage contract),
so a sketch's p50 or p99 is within ``ALPHA`` of the exact nearest-rank value.
Values at or below :data:`MIN_MS` (1 microsecond) count as 0; values above
:data:`MAX_MS` (about 28 hours) are reported as :data:`MAX_MS`.

Why not the ``ddsketch`` package: its quantile uses rank ``q * (n - 1)`` rather
than the nearest rank of the usage contract, and its only serialization is
protobuf; this module is the same algorithm in ~150 lines of pure Python.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Iterable

from .domain import nearest_rank

#: Relative error of every quantile this sketch reports (1 %).
ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
#: ``1 / ln(GAMMA)``: a value's bucket is ``ceil(ln(value) * INV_LOG_GAMMA)`` (SQL does it too).
INV_LOG_GAMMA = 1.0 / math.log(GAMMA)
_INV_LOG_GAMMA = INV_LOG_GAMMA
#: Values at or below this many ms are counted as 0 (the "zero" bucket).
MIN_MS = 1e-3
#: Values above this many ms are clamped to it (~28 h: no call lasts that long).
MAX_MS = 1e8
_MIN_KEY = math.ceil(math.log(MIN_MS) * _INV_LOG_GAMMA)
_MAX_KEY = math.ceil(math.log(MAX_MS) * _INV_LOG_GAMMA)

#: Serialized form: version byte, zero count (u64), bucket count (u32), then the bucket
#: keys (i16 each) and counts (u64 each), little-endian.
_VERSION = 1
_HEADER = struct.Struct("<BQI")


def bucket_key(value_ms: float) -> int | None:
    """The bucket holding ``value_ms``; ``None`` for the zero bucket (``<= MIN_MS``)."""
    if value_ms <= MIN_MS:
        return None
    if value_ms >= MAX_MS:
        return _MAX_KEY
    return max(_MIN_KEY, math.ceil(math.log(value_ms) * _INV_LOG_GAMMA))


def bucket_value(key: int) -> float:
    """The value reported for bucket ``key``: within ALPHA of anything in the bucket."""
    return min(MAX_MS, 2.0 * GAMMA**key / (GAMMA + 1.0))


class LatencySketch:
    """Counts of latencies per log bucket; add, merge, quantile, to and from bytes."""

    __slots__ = ("counts", "zero")

    def __init__(self) -> None:
        #: bucket key -> how many values fell in it
        self.counts: dict[int, int] = {}
        #: how many values were <= MIN_MS
        self.zero = 0

    @classmethod
    def of(cls, values: Iterable[float]) -> LatencySketch:
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch

    @property
    def count(self) -> int:
        return self.zero + sum(self.counts.values())

    def add(self, value_ms: float, n: int = 1) -> None:
        """Count ``n`` occurrences of ``value_ms`` (a finite number >= 0)."""
        key = bucket_key(value_ms)
        if key is None:
            self.zero += n
        else:
            counts = self.counts
            counts[key] = counts.get(key, 0) + n

    def add_to_bucket(self, key: int | None, n: int) -> None:
        """Count ``n`` values in bucket ``key`` (``None``: the zero bucket), e.g. from SQL."""
        if key is None:
            self.zero += n
        else:
            key = min(_MAX_KEY, max(_MIN_KEY, key))
            self.counts[key] = self.counts.get(key, 0) + n

    def merge(self, other: LatencySketch) -> None:
        """Add ``other``'s counts to this sketch (in place)."""
        self.zero += other.zero
        counts = self.counts
        for key, n in other.counts.items():
            counts[key] = counts.get(key, 0) + n

    def quantile(self, percent: float) -> float | None:
        """The nearest-rank ``percent`` percentile, within ALPHA; ``None`` when empty."""
        total = self.count
        if total == 0:
            return None
        rank = nearest_rank(total, percent)
        seen = self.zero
        if seen >= rank:
            return 0.0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= rank:
                return bucket_value(key)
        raise AssertionError("unreachable: the rank is at most the count")

    def to_bytes(self) -> bytes:
        keys = array("h", sorted(self.counts))
        counts = array("Q", (self.counts[k] for k in keys))
        if sys.byteorder == "big":  # pragma: no cover (every supported host is little-endian)
            keys.byteswap()
            counts.byteswap()
        return _HEADER.pack(_VERSION, self.zero, len(keys)) + keys.tobytes() + counts.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> LatencySketch:
        version, zero, n = _HEADER.unpack_from(data)
        if version != _VERSION or len(data) != _HEADER.size + 10 * n:
            raise ValueError(f"not a latency sketch (version {version}, {len(data)} bytes)")
        keys, counts = array("h"), array("Q")
        keys.frombytes(data[_HEADER.size : _HEADER.size + 2 * n])
        counts.frombytes(data[_HEADER.size + 2 * n :])
        if sys.byteorder == "big":  # pragma: no cover
            keys.byteswap()
            counts.byteswap()
        sketch = cls()
        sketch.zero = zero
        sketch.counts = dict(zip(keys, counts, strict=True))
        return sketch

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencySketch):
            return NotImplemented
        return self.zero == other.zero and self.counts == other.counts

    def __repr__(self) -> str:
        return f"LatencySketch(count={self.count}, buckets={len(self.counts)})"
