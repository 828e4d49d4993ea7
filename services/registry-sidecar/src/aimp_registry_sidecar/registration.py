"""Keeping this pod's entry in the registry true: register, status, heartbeats, leave.

The decisions are pure (:func:`desired_status`, :func:`backoff_s`); :class:`Registrar`
runs them against the registry. An unreachable registry never stops the sidecar:
each failure waits longer (1 s doubling to a ceiling) and the next success
re-registers with the current status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from aimp_core.registry_client import EurekaClient

log = logging.getLogger(__name__)

UP, DOWN, STARTING, OUT_OF_SERVICE = "UP", "DOWN", "STARTING", "OUT_OF_SERVICE"

#: First retry delay after a failed registry call.
BACKOFF_INITIAL_S = 1.0


def desired_status(*, ready: bool, ever_ready: bool) -> str:
    """UP while the server is ready; STARTING until it first is; DOWN when it stops being."""
    if ready:
        return UP
    return DOWN if ever_ready else STARTING


def backoff_s(failures: int, *, initial_s: float = BACKOFF_INITIAL_S, max_s: float) -> float:
    """Delay before the next try after ``failures`` consecutive failures (0 means none)."""
    if failures <= 0:
        return 0.0
    return float(min(max_s, initial_s * 2 ** min(failures - 1, 30)))


DocumentFactory = Callable[[str], dict[str, Any]]
ReadyProbe = Callable[[], Awaitable[bool]]


class Registrar:
    """Registers the instance and keeps its status and lease current until stopped."""

    def __init__(
        self,
        client: EurekaClient,
        *,
        app: str,
        instance_id: str,
        document: DocumentFactory,
        probe: ReadyProbe,
        renewal_interval_s: float,
        poll_interval_s: float,
        backoff_max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.app = app
        self.instance_id = instance_id
        self.document = document
        self.probe = probe
        self.renewal_interval_s = renewal_interval_s
        self.poll_interval_s = poll_interval_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        #: The status the registry holds for us, or None while we are not registered.
        self.registered_status: str | None = None
        self.ever_ready = False
        self.ready = False
        self.failures = 0
        self._retry_at = 0.0
        self._renewed_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="registrar")

    async def stop(self) -> None:
        """Stop the loop (no more registrations or heartbeats); the entry stays."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.poll_interval_s)

    async def tick(self) -> None:
        """One round: probe readiness, then register, change status or renew as needed."""
        self.ready = await self.probe()
        self.ever_ready = self.ever_ready or self.ready
        want = desired_status(ready=self.ready, ever_ready=self.ever_ready)
        now = self.clock()
        if now < self._retry_at:
            return
        try:
            if self.registered_status != want:
                await self._register(want)
            elif now - self._renewed_at >= self.renewal_interval_s:
                if not await self.client.renew(self.app, self.instance_id):
                    log.warning("registry forgot this instance; registering again")
                    await self._register(want)
                self._renewed_at = now
        except httpx.HTTPError as exc:
            self.failures += 1
            delay = backoff_s(self.failures, max_s=self.backoff_max_s)
            self._retry_at = now + delay
            log.warning(
                "registry call failed; retrying",
                extra={"error": f"{type(exc).__name__}: {exc}"[:300], "retry_in_s": delay},
            )
            return
        if self.failures:
            log.info("registry reachable again", extra={"after_failures": self.failures})
        self.failures = 0

    async def _register(self, status: str) -> None:
        await self.client.register(self.document(status))
        previous, self.registered_status = self.registered_status, status
        self._renewed_at = self.clock()
        log.info(
            "registered",
            extra={
                "app": self.app,
                "instance_id": self.instance_id,
                "status": status,
                "previous": previous,
            },
        )

    async def leave(self, *, before_cancel: Callable[[], Awaitable[None]] | None = None) -> None:
        """Mark the instance OUT_OF_SERVICE, run ``before_cancel`` (the drain), then cancel it."""
        await self.stop()
        was_registered = self.registered_status is not None
        if was_registered:
            try:
                await self.client.set_status(self.app, self.instance_id, OUT_OF_SERVICE)
                self.registered_status = OUT_OF_SERVICE
                log.info("marked OUT_OF_SERVICE", extra={"instance_id": self.instance_id})
            except httpx.HTTPError as exc:
                log.warning("could not mark OUT_OF_SERVICE", extra={"error": type(exc).__name__})
        if before_cancel is not None:
            await before_cancel()
        # Cancel even when no registration was confirmed: one may have landed unanswered.
        try:
            await self.client.cancel(self.app, self.instance_id)
            log.info("deregistered", extra={"instance_id": self.instance_id})
        except httpx.HTTPError as exc:
            log.warning(
                "could not deregister; the lease will expire", extra={"error": type(exc).__name__}
            )
        self.registered_status = None
