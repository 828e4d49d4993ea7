"""Passive failure detection (outlier ejection, as Envoy does it): pure, clock passed in.

Every forwarded call reports its outcome for the instance it went to. Consecutive
failures of one kind past that kind's threshold eject the instance: the balancer
skips it for an ejection time that doubles with each ejection in a row (base,
2 x base, ... up to the maximum). When the time is up the instance is *probing*:
still skipped until the caller (the router) has checked that it accepts
connections again, then reinstated; a failed probe ejects it again, for longer.
So a pod that died without a word gets no live call after the first one that
found it dead, however long the registry keeps listing it.

Failure kinds and their default thresholds:

- ``connect``: the connection was refused, or the host unreachable. One is enough:
  nothing listens there.
- ``gateway``: no connection within the connect timeout (an overloaded pod does
  that too), or the connection broke before a whole response, or none came in time.
- ``http_5xx``: the instance answered 5xx (the router leaves out 503: a live
  sidecar's way of shedding load or draining).

Any answer below 500 resets the counters. The cap: never the last UP instance of
a service (ejecting every instance cannot help callers, who get 502/503 either
way, and a lone instance that recovers should get calls at once); and for the
uncertain kinds (``gateway``, ``http_5xx``, which a busy but live pod can cause)
at most ``max_ejected_percent`` of the UP instances at once, so that a systemic
blip never piles all traffic on a few. A refused connection is not capped by
the percentage: such an instance cannot serve, so ejecting it takes no capacity
away, and when several pods die together none of them should keep getting calls.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field


class Failure(enum.Enum):
    CONNECT = "connect"
    GATEWAY = "gateway"
    HTTP_5XX = "http_5xx"


@dataclass(frozen=True)
class OutlierPolicy:
    """Thresholds (consecutive failures) and ejection times."""

    consecutive_connect_failures: int = 1
    consecutive_gateway_errors: int = 3
    consecutive_5xx: int = 5
    base_ejection_s: float = 5.0
    max_ejection_s: float = 60.0
    max_ejected_percent: float = 50.0

    def threshold(self, kind: Failure) -> int:
        if kind is Failure.CONNECT:
            return self.consecutive_connect_failures
        if kind is Failure.GATEWAY:
            return self.consecutive_gateway_errors
        return self.consecutive_5xx

    def ejection_s(self, times: int) -> float:
        """How long the ``times``-th ejection in a row lasts (1 = the first)."""
        return min(self.base_ejection_s * 2.0 ** min(max(times, 1) - 1, 32), self.max_ejection_s)

    def may_eject(self, *, ejected: int, up: int, kind: Failure = Failure.HTTP_5XX) -> bool:
        """Whether one more of a service's ``up`` instances may join the ``ejected`` ones."""
        after = ejected + 1
        if after >= up:
            return False  # never the last one
        return kind is Failure.CONNECT or after * 100.0 <= up * self.max_ejected_percent


@dataclass(frozen=True)
class Ejection:
    """An instance taken out of rotation: why, for how long, and the how-many-th time."""

    key: Hashable
    service: str
    reason: Failure
    duration_s: float
    until: float
    times: int


@dataclass
class _Health:
    service: str
    counts: dict[Failure, int] = field(default_factory=dict)
    #: Ejections in a row (sets the next ejection's length); 0 once healthy long enough.
    times: int = 0
    ejected_until: float | None = None
    probing: bool = False
    reinstated_at: float = 0.0

    @property
    def ejected(self) -> bool:
        return self.ejected_until is not None

    @property
    def idle(self) -> bool:
        return not self.counts and self.times == 0 and self.ejected_until is None


class OutlierDetector:
    """Outcome counters and ejections per instance key, grouped by service."""

    def __init__(self, policy: OutlierPolicy) -> None:
        self.policy = policy
        self._health: dict[Hashable, _Health] = {}
        self._ejected: dict[str, set[Hashable]] = {}

    # -- reading --------------------------------------------------------------------

    def is_ejected(self, key: Hashable) -> bool:
        h = self._health.get(key)
        return h is not None and h.ejected

    def ejected_keys(self) -> frozenset[Hashable]:
        """Every instance out of rotation now (ejected or probing)."""
        return frozenset(k for keys in self._ejected.values() for k in keys)

    def ejected_count(self, service: str) -> int:
        return len(self._ejected.get(service, ()))

    def state(self, key: Hashable) -> dict[str, object] | None:
        """The instance's counters and ejection, for operators (None when nothing to say)."""
        h = self._health.get(key)
        if h is None:
            return None
        return {
            "consecutive": {k.value: v for k, v in h.counts.items()},
            "ejections_in_a_row": h.times,
            "ejected_until": h.ejected_until,
            "probing": h.probing,
        }

    def next_due(self) -> float | None:
        """The earliest time an ejection ends (probing ones excluded), if any."""
        times = [
            h.ejected_until
            for h in self._health.values()
            if h.ejected_until is not None and not h.probing
        ]
        return min(times) if times else None

    # -- outcomes ----------------------------------------------------------------------

    def success(self, key: Hashable, now: float) -> None:
        """An answer below 500: the counters start over (the hot path: one lookup if idle)."""
        h = self._health.get(key)
        if h is None:
            return
        h.counts.clear()
        if h.times and not h.ejected and now - h.reinstated_at >= self.policy.max_ejection_s:
            h.times = 0  # healthy for a whole maximum ejection time: start over at base
        if h.idle:
            del self._health[key]

    def failure(
        self, key: Hashable, service: str, kind: Failure, *, up: int, now: float
    ) -> Ejection | None:
        """Count one failure; returns the ejection it caused, if any.

        ``up`` is the number of the service's UP instances (the cap's base). A
        failure of an instance already out of rotation (a call that was under way
        when it was ejected) changes nothing.
        """
        h = self._health.get(key)
        if h is None:
            h = self._health[key] = _Health(service)
        if h.ejected:
            return None
        count = h.counts.get(kind, 0) + 1
        h.counts[kind] = count
        if count < self.policy.threshold(kind):
            return None
        if not self.policy.may_eject(ejected=self.ejected_count(service), up=up, kind=kind):
            return None
        return self._eject(key, h, kind, now)

    def _eject(self, key: Hashable, h: _Health, kind: Failure, now: float) -> Ejection:
        h.times += 1
        duration = self.policy.ejection_s(h.times)
        h.ejected_until = now + duration
        h.probing = False
        h.counts.clear()
        self._ejected.setdefault(h.service, set()).add(key)
        return Ejection(key, h.service, kind, duration, h.ejected_until, h.times)

    # -- the end of an ejection ----------------------------------------------------------

    def due(self, now: float) -> list[Hashable]:
        """Ejections whose time is up: now probing (still out of rotation) until reported."""
        keys = []
        for key, h in self._health.items():
            if h.ejected_until is not None and not h.probing and h.ejected_until <= now:
                h.probing = True
                keys.append(key)
        return keys

    def probe_succeeded(self, key: Hashable, now: float) -> bool:
        """The instance accepts connections again: back in rotation. True if it was out."""
        h = self._health.get(key)
        if h is None or not h.ejected:
            return False
        self._release(key, h)
        h.reinstated_at = now
        return True

    def probe_failed(self, key: Hashable, now: float) -> Ejection | None:
        """Still dead: ejected again, for longer (None if it is no longer tracked)."""
        h = self._health.get(key)
        if h is None or not h.ejected:
            return None
        self._release(key, h)
        return self._eject(key, h, Failure.CONNECT, now)

    def _release(self, key: Hashable, h: _Health) -> None:
        h.ejected_until = None
        h.probing = False
        keys = self._ejected.get(h.service)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._ejected[h.service]

    # -- registry changes ----------------------------------------------------------------

    def reset(self, key: Hashable) -> bool:
        """Forget the instance (it registered anew: a fresh process). True if it was out."""
        h = self._health.pop(key, None)
        if h is None:
            return False
        was_out = h.ejected
        self._release(key, h)
        return was_out

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every instance not in ``keys`` (gone from the registry)."""
        keep = set(keys)
        for key in [k for k in self._health if k not in keep]:
            self.reset(key)
