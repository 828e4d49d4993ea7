"""A bulkhead: at most ``max_concurrent`` calls to a service at once, refused at once beyond.

Semaphore semantics without a queue (Resilience4j's ``maxWaitDuration = 0``): a
call that finds every place taken is refused immediately, so a slow service
cannot tie up the gateway's connections and memory with waiting callers. Not
thread-safe: the gateway uses it from its one event loop.
"""

from __future__ import annotations


class BulkheadError(RuntimeError):
    """:meth:`Bulkhead.leave` without a matching :meth:`Bulkhead.try_enter`."""


class Bulkhead:
    """Counts calls in flight against a fixed maximum."""

    __slots__ = ("in_flight", "max_concurrent")

    def __init__(self, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError(
                f"a bulkhead must allow at least 1 concurrent call, not {max_concurrent}; "
                "leave max_concurrent unset for no limit"
            )
        self.max_concurrent = max_concurrent
        self.in_flight = 0

    def try_enter(self) -> bool:
        """Take a place for one call; False (and nothing taken) when all are taken."""
        if self.in_flight >= self.max_concurrent:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        """The call that entered is over: free its place."""
        if self.in_flight <= 0:
            raise BulkheadError("bulkhead left more often than entered; leave once per entry")
        self.in_flight -= 1
