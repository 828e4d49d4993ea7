"""The IETF RateLimit headers (draft-ietf-httpapi-ratelimit-headers) for one decision.

``RateLimit-Policy`` lists each limit's quota ``q`` per window ``w`` seconds:
a rate limit as the calls its rate admits per window (with the non-standard
``burst`` parameter the draft allows), daily and monthly quotas as
``<name>/day`` and ``<name>/month``. ``RateLimit`` gives, per item, the calls
remaining ``r`` and the seconds ``t`` until more are available. Concurrency
caps have no window and are not listed; a 429 names them in its detail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from aimp_core.ratelimit.algorithm import Numbers
from aimp_core.ratelimit.calendar import US_PER_S, day_end_us, month_end_us, month_length_s
from aimp_core.ratelimit.limits import Kind, LimitSpec
from aimp_core.ratelimit.policies import Applied


def _seconds(us: int) -> int:
    return math.ceil(us / US_PER_S)


def rate_item(name: str, spec: LimitSpec) -> str:
    window_s = max(1, math.ceil(spec.interval_us / US_PER_S))
    quota = (window_s * US_PER_S) // spec.interval_us
    return f'"{name}";q={quota};w={window_s};burst={spec.burst}'


def policy_header(limits: Sequence[tuple[str, LimitSpec]], now_us: int) -> str:
    """``RateLimit-Policy`` for these (name, spec) limits; ``now_us`` sets the month length."""
    items: list[str] = []
    for name, spec in limits:
        if spec.interval_us > 0:
            items.append(rate_item(name, spec))
        if spec.quota_day > 0:
            items.append(f'"{name}/day";q={spec.quota_day};w=86400')
        if spec.quota_month > 0:
            items.append(f'"{name}/month";q={spec.quota_month};w={month_length_s(now_us)}')
    return ", ".join(items)


def ratelimit_header(
    limits: Sequence[tuple[str, LimitSpec]], numbers: Sequence[Numbers], now_us: int
) -> str:
    """``RateLimit``: what each listed limit has left after this decision."""
    items: list[str] = []
    for (name, spec), n in zip(limits, numbers, strict=True):
        if spec.interval_us > 0:
            items.append(f'"{name}";r={n.rate_remaining};t={_seconds(n.rate_wait_us)}')
        if spec.quota_day > 0:
            wait = _seconds(day_end_us(now_us) - now_us)
            items.append(f'"{name}/day";r={n.day_remaining};t={wait}')
        if spec.quota_month > 0:
            wait = _seconds(month_end_us(now_us) - now_us)
            items.append(f'"{name}/month";r={n.month_remaining};t={wait}')
    return ", ".join(items)


def _rate(value: float) -> str:
    return f"{value:g}"


def refusal_detail(client_id: str, applied: Applied, kind: Kind | None, in_flight: int) -> str:
    """The problem detail of a refused call: which limit, what it allows, what to do."""
    f, name, source = applied.fields, applied.name, applied.source
    if kind is Kind.DAY:
        return (
            f"client '{client_id}' has used its daily quota of {f.quota_day} calls "
            f"(limit '{name}/day', {source}); it resets at 00:00 UTC"
        )
    if kind is Kind.MONTH:
        return (
            f"client '{client_id}' has used its monthly quota of {f.quota_month} calls "
            f"(limit '{name}/month', {source}); it resets on the 1st at 00:00 UTC"
        )
    if kind is Kind.CONCURRENCY:
        return (
            f"client '{client_id}' already has {in_flight} calls in flight, the most that "
            f"limit '{name}' allows ({source}); retry when one of them ends"
        )
    return (
        f"client '{client_id}' is over its rate limit '{name}' ({_rate(f.rate)} calls/s, "
        f"burst {f.burst}; {source}); retry after the Retry-After delay or ask an admin "
        "for a higher limit"
    )


def closed_detail(applied: Applied) -> str:
    """The detail of a 503 while Redis is unreachable and a limit fails closed."""
    return (
        f"the rate-limit store (Redis) is unreachable and limit '{applied.name}' "
        f"({applied.source}) fails closed; retry shortly"
    )
