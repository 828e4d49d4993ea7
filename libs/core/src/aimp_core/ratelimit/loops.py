"""Background loops that stop reliably.

redis-py's asyncio client can swallow a task cancellation that lands while a
command completes, and the task then runs on. So every loop here also watches
a stop event, sleeps on it, and :meth:`Loop.stop` waits a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class Loop:
    """Runs ``body`` until stopped; ``body`` pauses with :meth:`sleep`."""

    def __init__(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.body = body
        self.stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name=self.name)

    async def _main(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.body()
            except Exception:
                log.exception("background loop failed; restarting it", extra={"loop": self.name})
                await self.sleep(1.0)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the loop is stopping."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stopping.wait()

    async def stop(self, timeout_s: float = 2.0) -> None:
        self.stopping.set()
        task = self._task
        if task is None:
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            log.warning("background loop did not stop in time", extra={"loop": self.name})
        elif not task.cancelled() and task.exception() is not None:
            log.warning("background loop ended with an error", extra={"loop": self.name})


async def follow_channel(
    redis: Redis,
    channel: str,
    refresh: Callable[[], Awaitable[object]],
    *,
    poll_s: float,
    stopping: asyncio.Event | None = None,
) -> None:
    """Call ``refresh`` now, on every message on ``channel``, and at least every ``poll_s``.

    The pattern every Redis-published setting follows (throttle rules, revocations, the
    gateway's configuration, backflow rates): the message only wakes the reader early,
    ``refresh`` reads the state itself, so a lost message costs at most ``poll_s``.
    Runs until ``stopping`` is set; Redis errors propagate to the caller, which decides
    how to wait; the subscription is always closed.
    """
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(channel)
        while stopping is None or not stopping.is_set():
            await refresh()
            await pubsub.get_message(timeout=poll_s)
    finally:
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
