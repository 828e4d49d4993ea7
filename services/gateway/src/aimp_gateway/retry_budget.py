"""A retry budget (Finagle's ``RetryBudget``): retries may add only a share to the calls sent.

Every first attempt deposits ``budget_percent / 100`` of a retry; every retry
withdraws one. Deposits and withdrawals count for ``ttl_s`` seconds (a sliding
window of 1 s buckets), and a reserve of ``min_retries_per_s * ttl_s`` retries
is always there so that a service with little traffic can still retry. A retry
is allowed while, counting it, the retries in the window stay within

    min_retries_per_s * ttl_s + budget_percent / 100 * first attempts in the window

So when a service fails, retries cannot multiply its load: at 20 % they add at
most a fifth (plus the small reserve), however many attempts a policy allows.
Pure: the clock is injected; not thread-safe (one event loop).
"""

from __future__ import annotations

from collections.abc import Callable

from aimp_gateway.windows import SecondsWindow

#: Finagle's default: deposits and withdrawals count for 10 s.
DEFAULT_TTL_S = 10

#: Float slack so that e.g. 29 % of 100 calls (28.999999999999996) still allows 29 retries.
_EPSILON = 1e-9


class RetryBudget:
    """Admits or refuses retries so they stay within a share of recent first attempts."""

    __slots__ = ("_clock", "_window", "min_retries_per_s", "percent", "ttl_s")

    def __init__(
        self,
        *,
        percent: float,
        min_retries_per_s: float,
        clock: Callable[[], float],
        ttl_s: int = DEFAULT_TTL_S,
    ) -> None:
        if percent < 0 or min_retries_per_s < 0:
            raise ValueError(
                f"a retry budget needs percent >= 0 and min_retries_per_s >= 0, not "
                f"{percent} and {min_retries_per_s}"
            )
        self.percent = percent
        self.min_retries_per_s = min_retries_per_s
        self.ttl_s = ttl_s
        self._clock = clock
        self._window = SecondsWindow(ttl_s, fields=2)

    def sent(self) -> None:
        """A first attempt went out: it deposits a share of a retry."""
        self._window.add(self._clock(), (1, 0))

    def allowance(self) -> float:
        """Retries the window allows in all (reserve + share of first attempts)."""
        sent, _ = self._window.sums(self._clock())
        return self.min_retries_per_s * self.ttl_s + self.percent / 100.0 * sent

    def balance(self) -> float:
        """Retries still allowed now (may be negative once deposits age out first)."""
        now = self._clock()
        sent, retried = self._window.sums(now)
        return self.min_retries_per_s * self.ttl_s + self.percent / 100.0 * sent - retried

    def try_retry(self) -> bool:
        """Withdraw one retry if the budget holds it; False (nothing withdrawn) if not."""
        if self.balance() < 1.0 - _EPSILON:
            return False
        self._window.add(self._clock(), (0, 1))
        return True
