"""The multi-limit decision, in pure Python: the specification of the Lua script.

Every call is checked against all the limits that apply to it at one instant
``now_us``. It is admitted only if it fits every one of them, and only then is
anything consumed (all or nothing): a call refused by a daily quota takes
nothing from its rate limits, and vice versa.

Per limit:

* **Rate** (GCRA). The state is a theoretical arrival time ``tat``. A call
  costs ``cost`` microseconds and fits when ``max(tat, now) - now + cost`` is
  at most ``burst * interval`` (or, for a call costing more than that, when
  the bucket is full). Without warm-up ``cost = interval`` and this is exactly
  a token bucket of ``burst`` tokens refilled one per interval: at most
  ``rate * t + burst`` calls in any window of length ``t``. A TAT further
  ahead than one bucket (left by an older, tighter policy; under one spec it
  never happens) is cut back to one bucket and stored so, even by a refused
  call: loosening a limit takes effect at once, the client counting as having
  just used up the new bucket.
* **Warm-up** (Sentinel's idea, as a time ramp). After ``warmup_us`` without
  an admitted call (a cold or newly scaled service), or from an explicit
  ``warm_epoch_us``, a call costs ``cold`` times as much, falling linearly to
  one interval over ``warmup_us``. Costs never drop below one interval, so the
  ``rate * t + burst`` bound holds during the ramp too.
* **Quotas**. Calls are counted per UTC day and per UTC month (always, so a
  quota added at noon counts the morning); a quota refuses the call that
  would exceed it.
* **Concurrency**. Each admitted call holds a lease (an id with an expiry) in
  every limit with a concurrency cap; a lease whose expiry has passed no longer
  counts, so a crashed holder leaks nothing for longer than the lease time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aimp_core.ratelimit.calendar import day_end_us, day_index, month_end_us, month_index
from aimp_core.ratelimit.limits import Kind, LimitSpec

#: Retry-After hint for a concurrency refusal: a slot frees when any call ends.
CONCURRENCY_RETRY_US = 1_000_000


@dataclass(frozen=True)
class LimitState:
    """What Redis keeps for one limit (a hash, and a sorted set of leases)."""

    tat_us: int | None = None
    warm_start_us: int | None = None
    last_us: int | None = None
    day: int | None = None
    day_count: int = 0
    month: int | None = None
    month_count: int = 0
    #: lease id -> expiry (microseconds); expired ones are dropped on every check.
    leases: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Numbers:
    """Per limit, after the decision: what is left, and when more comes (-1: no such limit)."""

    rate_remaining: int
    rate_wait_us: int
    day_remaining: int
    month_remaining: int
    concurrency_remaining: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: The index of the limit that refused (the one with the longest wait); -1 if admitted.
    failed: int
    kind: Kind | None
    #: How long until the call would fit the refusing limit; 0 if admitted.
    retry_after_us: int
    now_us: int
    numbers: tuple[Numbers, ...]
    #: The states to store (unchanged but for expired leases when refused).
    states: tuple[LimitState, ...]

    def as_reply(self) -> list[int]:
        """The flat integer list the Lua script returns, for comparing the two."""
        out = [
            int(self.allowed),
            self.failed + 1,
            int(self.kind or 0),
            self.retry_after_us,
            self.now_us,
        ]
        for n in self.numbers:
            out += [
                n.rate_remaining,
                n.rate_wait_us,
                n.day_remaining,
                n.month_remaining,
                n.concurrency_remaining,
            ]
        return out


def warm_cost(spec: LimitSpec, warm_start_us: int, now_us: int) -> int:
    """The cost of one call ``now_us - warm_start_us`` into the ramp (float ops as in Lua)."""
    elapsed = now_us - warm_start_us
    if spec.warmup_us <= 0 or elapsed >= spec.warmup_us:
        return spec.interval_us
    extra = (
        spec.interval_us
        * ((spec.cold_milli - 1000) / 1000)
        * ((spec.warmup_us - elapsed) / spec.warmup_us)
    )
    return spec.interval_us + math.ceil(extra)


@dataclass
class _Eval:
    fits: bool = True
    kind: Kind | None = None
    retry_us: int = 0
    new_tat: int | None = None
    warm_start: int | None = None
    day_count: int = 0
    month_count: int = 0
    leases: dict[str, int] = field(default_factory=dict)
    rate_pre: tuple[int, int] = (-1, 0)
    #: Set when the stored TAT was cut back to the horizon (stored even if refused).
    clamped_tat: int | None = None


def _fail(ev: _Eval, kind: Kind, retry_us: int) -> None:
    ev.fits = False
    if ev.kind is None or retry_us > ev.retry_us:
        ev.kind, ev.retry_us = kind, retry_us


def _evaluate(spec: LimitSpec, st: LimitState, now: int, day: int, month: int) -> _Eval:
    ev = _Eval()
    if spec.interval_us > 0:
        cost = spec.interval_us
        if spec.warmup_us > 0:
            ws = st.warm_start_us
            if ws is None or st.last_us is None or now - st.last_us >= spec.warmup_us:
                ws = now
            if ws < spec.warm_epoch_us <= now:
                ws = spec.warm_epoch_us
            ev.warm_start = ws
            cost = warm_cost(spec, ws, now)
        base = now if st.tat_us is None or st.tat_us < now else st.tat_us
        cap = spec.capacity_us
        # A TAT beyond the horizon can only come from an older, tighter spec (under one
        # spec it never gets there): the client has at most just used up the new bucket.
        horizon = max(cap, warm_cost(spec, now, now)) if spec.warmup_us > 0 else cap
        if base > now + horizon:
            base = ev.clamped_tat = now + horizon
        ahead = base - now
        # A cold call may cost more than the whole bucket: it then needs a full bucket.
        room = max(cap - cost, 0)
        ev.rate_pre = (max(0, (cap - ahead) // spec.interval_us), max(0, ahead - room))
        if ahead > room:
            _fail(ev, Kind.RATE, ahead - room)
        else:
            ev.new_tat = base + cost
    ev.day_count = st.day_count if st.day == day else 0
    if spec.quota_day > 0 and ev.day_count + 1 > spec.quota_day:
        _fail(ev, Kind.DAY, day_end_us(now) - now)
    ev.month_count = st.month_count if st.month == month else 0
    if spec.quota_month > 0 and ev.month_count + 1 > spec.quota_month:
        _fail(ev, Kind.MONTH, month_end_us(now) - now)
    if spec.concurrency > 0:
        ev.leases = {k: v for k, v in st.leases.items() if v > now}
        if len(ev.leases) + 1 > spec.concurrency:
            _fail(ev, Kind.CONCURRENCY, CONCURRENCY_RETRY_US)
    return ev


def decide(
    specs: Sequence[LimitSpec],
    states: Sequence[LimitState],
    now_us: int,
    *,
    lease_id: str = "",
    lease_ttl_us: int = 0,
) -> Decision:
    """Admit or refuse one call at ``now_us`` against every limit; all or nothing."""
    day, month = day_index(now_us), month_index(now_us)
    evals = [_evaluate(s, st, now_us, day, month) for s, st in zip(specs, states, strict=True)]
    failed, kind, retry = -1, None, 0
    for i, ev in enumerate(evals):
        if not ev.fits and (failed < 0 or ev.retry_us > retry):
            failed, kind, retry = i, ev.kind, ev.retry_us
    allowed = failed < 0
    numbers: list[Numbers] = []
    new_states: list[LimitState] = []
    for spec, st, ev in zip(specs, states, evals, strict=True):
        used = 1 if allowed else 0
        rate = (-1, 0)
        if spec.interval_us > 0:
            rate = ev.rate_pre
            if allowed:
                assert ev.new_tat is not None
                ahead = ev.new_tat - now_us
                rate = (
                    (spec.capacity_us - ahead) // spec.interval_us,
                    max(0, ahead + spec.interval_us - spec.capacity_us),
                )
        leases = ev.leases if spec.concurrency > 0 else dict(st.leases)
        if allowed and spec.concurrency > 0:
            leases = {**leases, lease_id: now_us + lease_ttl_us}
        numbers.append(
            Numbers(
                rate_remaining=rate[0],
                rate_wait_us=rate[1],
                day_remaining=_left(spec.quota_day, ev.day_count + used),
                month_remaining=_left(spec.quota_month, ev.month_count + used),
                concurrency_remaining=_left(spec.concurrency, len(ev.leases) + used),
            )
        )
        if not allowed:
            tat = st.tat_us if ev.clamped_tat is None else ev.clamped_tat
            new_states.append(LimitState(**{**st.__dict__, "leases": leases, "tat_us": tat}))
            continue
        warm = spec.interval_us > 0 and spec.warmup_us > 0
        new_states.append(
            LimitState(
                tat_us=ev.new_tat if spec.interval_us > 0 else st.tat_us,
                warm_start_us=ev.warm_start if warm else st.warm_start_us,
                last_us=now_us if warm else st.last_us,
                day=day,
                day_count=ev.day_count + 1,
                month=month,
                month_count=ev.month_count + 1,
                leases=leases,
            )
        )
    return Decision(
        allowed=allowed,
        failed=failed,
        kind=kind,
        retry_after_us=retry,
        now_us=now_us,
        numbers=tuple(numbers),
        states=tuple(new_states),
    )


def _left(cap: int, used: int) -> int:
    """What is left of ``cap`` (never below 0), or -1 when there is no cap."""
    return max(0, cap - used) if cap > 0 else -1


def release(state: LimitState, lease_id: str) -> LimitState:
    """The state without ``lease_id`` (the call ended)."""
    if lease_id not in state.leases:
        return state
    leases = {k: v for k, v in state.leases.items() if k != lease_id}
    return LimitState(**{**state.__dict__, "leases": leases})
