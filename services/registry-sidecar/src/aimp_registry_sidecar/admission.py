"""Concurrency limit with a bounded queue: the pure decision and the asyncio gate using it.

At most ``limit`` calls run upstream; up to ``queue_size`` more wait in arrival
order; beyond that a call is refused at once (the caller gets 503 and can try
another pod). While draining, every new call is refused.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Verdict(enum.Enum):
    RUN = "run"
    QUEUE = "queue"
    FULL = "full"
    DRAINING = "draining"


def admit(*, in_flight: int, queued: int, limit: int, queue_size: int, draining: bool) -> Verdict:
    """What to do with one arriving call, given the gate's counters."""
    if draining:
        return Verdict.DRAINING
    if in_flight < limit and queued == 0:
        return Verdict.RUN
    if queued < queue_size:
        return Verdict.QUEUE
    return Verdict.FULL


class Rejected(Exception):
    """A call the gate refused; ``verdict`` says why (FULL or DRAINING)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.value)
        self.verdict = verdict


class Gate:
    """Admits calls with :func:`admit`; asyncio runs one task at a time, so counts are exact."""

    def __init__(self, limit: int, queue_size: int) -> None:
        self.limit = limit
        self.queue_size = queue_size
        self.in_flight = 0
        self.queued = 0
        self.draining = False
        self._slots = asyncio.Semaphore(limit)
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of ``limit`` slots for the body of the ``async with``; raise Rejected."""
        verdict = admit(
            in_flight=self.in_flight,
            queued=self.queued,
            limit=self.limit,
            queue_size=self.queue_size,
            draining=self.draining,
        )
        if verdict in (Verdict.FULL, Verdict.DRAINING):
            raise Rejected(verdict)
        self._idle.clear()
        self.queued += 1
        try:
            await self._slots.acquire()
        except BaseException:
            self._leave_queue()
            raise
        self.queued -= 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()
            self._check_idle()

    def _leave_queue(self) -> None:
        self.queued -= 1
        self._check_idle()

    def _check_idle(self) -> None:
        if self.in_flight == 0 and self.queued == 0:
            self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new calls and wait for admitted ones; False if some were still running."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
