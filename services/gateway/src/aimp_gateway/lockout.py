"""Failed sign-ins slow down, then lock out, one username or client id (pure decisions).

Within ``window_s``, the first failure is free (a typo); each further one makes
the next attempt wait ``base_delay_s`` doubling up to ``max_delay_s``; the
``max_failures``-th locks the name for ``lock_s``. A success clears it all.
The state lives in Redis (:mod:`aimp_gateway.login_guard`) so every gateway
sees the same count.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    window_s: float = 300.0
    lock_s: float = 900.0
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0


@dataclass(frozen=True)
class Attempts:
    """Recent failures of one name (timestamps) and the end of its lock, if any."""

    failures: tuple[float, ...] = ()
    locked_until: float | None = None


class Verdict(StrEnum):
    ALLOW = "allow"
    SLOW_DOWN = "slow_down"
    LOCKED = "locked"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    retry_after_s: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


def recent(attempts: Attempts, now: float, policy: LockoutPolicy) -> tuple[float, ...]:
    """The failures inside the window ending at ``now``."""
    return tuple(sorted(t for t in attempts.failures if now - policy.window_s < t <= now))


def delay_after(failures: int, policy: LockoutPolicy) -> float:
    """How long the next attempt must wait after ``failures`` recent failures."""
    if failures < 2:
        return 0.0
    return min(policy.max_delay_s, policy.base_delay_s * 2.0 ** (failures - 2))


def decide(attempts: Attempts, now: float, policy: LockoutPolicy) -> Decision:
    """May one more attempt be checked at ``now``?"""
    if attempts.locked_until is not None and now < attempts.locked_until:
        return Decision(Verdict.LOCKED, attempts.locked_until - now)
    failures = recent(attempts, now, policy)
    if not failures:
        return Decision(Verdict.ALLOW)
    ready_at = failures[-1] + delay_after(len(failures), policy)
    if now < ready_at:
        return Decision(Verdict.SLOW_DOWN, ready_at - now)
    return Decision(Verdict.ALLOW)


def after_failure(attempts: Attempts, now: float, policy: LockoutPolicy) -> Attempts:
    """The state after one more failure at ``now``: locked once ``max_failures`` are recent."""
    failures = (*recent(attempts, now, policy), now)
    if len(failures) >= policy.max_failures:
        return Attempts((), now + policy.lock_s)
    locked = attempts.locked_until
    return Attempts(failures, locked if locked is not None and locked > now else None)
