"""The generic cell rate algorithm (GCRA), the rate limit the gateway enforces per client.

GCRA keeps one number per client, the theoretical arrival time (TAT). It
admits exactly what a token bucket of ``burst`` tokens refilled at ``rate``
per second admits: over any interval of length ``t`` at most
``rate * t + burst`` calls. Time is in integer microseconds and the emission
interval is rounded up to a whole microsecond, so the arithmetic is exact in
Python and in Redis Lua (doubles hold integers up to 2**53 exactly) and the
effective rate never exceeds the configured one.

:data:`LUA_SCRIPT` is the same function run atomically inside Redis, reading
the clock with ``TIME`` so every gateway replica shares one clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

US_PER_S = 1_000_000


@dataclass(frozen=True)
class Limit:
    """``burst`` calls at once, refilled at one call per ``interval_us``."""

    interval_us: int
    burst: int

    @classmethod
    def per_second(cls, rate_per_s: float, burst: int) -> Limit:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate_per_s > 0 and burst >= 1")
        # Exact arithmetic: float division could round the interval down by a hair and
        # so admit slightly more than the configured rate.
        exact = Fraction(US_PER_S) / Fraction(rate_per_s)
        return cls(interval_us=max(1, math.ceil(exact)), burst=burst)

    @property
    def tolerance_us(self) -> int:
        """How far the TAT may run ahead of now and still admit a call."""
        return (self.burst - 1) * self.interval_us


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: The client's TAT after this call (store it).
    tat_us: int
    #: Calls that would still be admitted right now.
    remaining: int
    #: When rejected: wait this long before the next call fits; 0 when allowed.
    retry_after_us: int
    #: Until the bucket is full again.
    reset_after_us: int


def decide(tat_us: int | None, now_us: int, limit: Limit) -> Decision:
    """Admit or reject one call arriving at ``now_us`` given the stored TAT."""
    tat = now_us if tat_us is None or tat_us < now_us else tat_us
    ahead = tat - now_us
    if ahead > limit.tolerance_us:
        return Decision(
            allowed=False,
            tat_us=tat,
            remaining=0,
            retry_after_us=ahead - limit.tolerance_us,
            reset_after_us=ahead,
        )
    new_tat = tat + limit.interval_us
    ahead = new_tat - now_us
    remaining = (limit.burst * limit.interval_us - ahead) // limit.interval_us
    return Decision(
        allowed=True, tat_us=new_tat, remaining=remaining, retry_after_us=0, reset_after_us=ahead
    )


#: KEYS[1] = the client's key; ARGV[1] = interval_us, ARGV[2] = burst.
#: Returns {allowed (0/1), remaining, retry_after_us, reset_after_us}; the key
#: expires when the bucket is full again, so idle clients cost no memory.
LUA_SCRIPT = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local ahead = tat - now
local tolerance = (burst - 1) * interval
if ahead > tolerance then
  return {0, 0, ahead - tolerance, ahead}
end
local new_tat = tat + interval
ahead = new_tat - now
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(ahead / 1000) + 1)
return {1, math.floor((burst * interval - ahead) / interval), 0, ahead}
"""


#: The policy name the IETF RateLimit headers carry.
POLICY_NAME = "client-rate"


def policy_header(limit: Limit) -> str:
    """``RateLimit-Policy`` (draft-ietf-httpapi-ratelimit-headers): quota ``q`` per ``w`` s."""
    window_s = max(1, math.ceil(limit.interval_us / US_PER_S))
    quota = (window_s * US_PER_S) // limit.interval_us
    return f'"{POLICY_NAME}";q={quota};w={window_s};burst={limit.burst}'


def ratelimit_header(decision: Decision) -> str:
    """``RateLimit``: calls remaining ``r`` and seconds ``t`` until the next one fits."""
    wait_s = math.ceil(decision.retry_after_us / US_PER_S)
    return f'"{POLICY_NAME}";r={decision.remaining};t={wait_s}'
