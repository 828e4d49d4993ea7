"""Keeping this pod's entry in the registry true: register, status, heartbeats, leave.

The decisions are pure (:func:`desired_status`, :func:`backoff_s`, :func:`next_action`);
:class:`Registrar` runs them against a :class:`Registration`, the small interface
the registry adapter (:mod:`aimp_registry_sidecar.eureka_adapter`, py-eureka-client)
implements. Nothing here imports a registry client library, so the logic is tested
with an in-memory registration and the adapter against the real registry.

An unreachable registry never stops the sidecar: each failure waits longer
(1 s doubling to a ceiling) and the next success re-registers with the current status.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

UP, DOWN, STARTING, OUT_OF_SERVICE = "UP", "DOWN", "STARTING", "OUT_OF_SERVICE"

#: First retry delay after a failed registry call.
BACKOFF_INITIAL_S = 1.0


class RegistryUnreachable(Exception):
    """A registry call failed: no connection, a timeout, or an error answer."""


class Registration(Protocol):
    """This pod's one entry in the registry; the adapter knows the app and instance id."""

    @property
    def app(self) -> str: ...

    @property
    def instance_id(self) -> str: ...

    async def register(self, status: str) -> None:
        """Register (or re-register) the instance with ``status``."""

    async def renew(self, status: str) -> bool:
        """Heartbeat; False means the registry does not know the instance (register again)."""
        ...

    async def set_status(self, status: str) -> None:
        """Pin the instance's status in the registry (used for OUT_OF_SERVICE)."""

    async def cancel(self) -> None:
        """Remove the instance; an instance the registry no longer knows is not an error."""


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


class Action(enum.Enum):
    NOTHING = "nothing"
    REGISTER = "register"
    RENEW = "renew"


def next_action(
    *,
    registered: str | None,
    want: str,
    now: float,
    renewed_at: float,
    renewal_interval_s: float,
    retry_at: float,
) -> Action:
    """What one round does: wait out a backoff, register a changed status, or heartbeat."""
    if now < retry_at:
        return Action.NOTHING
    if registered != want:
        return Action.REGISTER
    if now - renewed_at >= renewal_interval_s:
        return Action.RENEW
    return Action.NOTHING


ReadyProbe = Callable[[], Awaitable[bool]]


class Registrar:
    """Registers the instance and keeps its status and lease current until stopped."""

    def __init__(
        self,
        registration: Registration,
        *,
        probe: ReadyProbe,
        renewal_interval_s: float,
        poll_interval_s: float,
        backoff_max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registration = registration
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
        self._wake = asyncio.Event()

    @property
    def _ids(self) -> dict[str, str]:
        return {"app": self.registration.app, "instance_id": self.registration.instance_id}

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
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    def recheck(self) -> None:
        """Probe readiness now rather than at the next poll (the server just refused a call)."""
        self._wake.set()

    async def tick(self) -> None:
        """One round: probe readiness, then register, change status or renew as needed."""
        self.ready = await self.probe()
        self.ever_ready = self.ever_ready or self.ready
        want = desired_status(ready=self.ready, ever_ready=self.ever_ready)
        now = self.clock()
        action = next_action(
            registered=self.registered_status,
            want=want,
            now=now,
            renewed_at=self._renewed_at,
            renewal_interval_s=self.renewal_interval_s,
            retry_at=self._retry_at,
        )
        if action is Action.NOTHING:
            return
        try:
            if action is Action.REGISTER:
                await self._register(want)
            elif await self.registration.renew(want):
                self._renewed_at = now
            else:
                log.warning("registry forgot this instance; registering again", extra=self._ids)
                await self._register(want)
        except RegistryUnreachable as exc:
            self.failures += 1
            delay = backoff_s(self.failures, max_s=self.backoff_max_s)
            self._retry_at = now + delay
            log.warning(
                "registry call failed; retrying",
                extra={"error": str(exc)[:300], "retry_in_s": delay, **self._ids},
            )
            return
        if self.failures:
            log.info("registry reachable again", extra={"after_failures": self.failures})
        self.failures = 0

    async def _register(self, status: str) -> None:
        await self.registration.register(status)
        previous, self.registered_status = self.registered_status, status
        self._renewed_at = self.clock()
        log.info("registered", extra={"status": status, "previous": previous, **self._ids})

    async def leave(self, *, before_cancel: Callable[[], Awaitable[None]] | None = None) -> None:
        """Mark the instance OUT_OF_SERVICE, run ``before_cancel`` (the drain), then cancel it."""
        await self.stop()
        if self.registered_status is not None:
            try:
                await self.registration.set_status(OUT_OF_SERVICE)
                self.registered_status = OUT_OF_SERVICE
                log.info("marked OUT_OF_SERVICE", extra=self._ids)
            except RegistryUnreachable as exc:
                log.warning("could not mark OUT_OF_SERVICE", extra={"error": str(exc)[:300]})
        if before_cancel is not None:
            await before_cancel()
        # Cancel even when no registration was confirmed: one may have landed unanswered.
        try:
            await self.registration.cancel()
            log.info("deregistered", extra=self._ids)
        except RegistryUnreachable as exc:
            log.warning(
                "could not deregister; the lease will expire", extra={"error": str(exc)[:300]}
            )
        self.registered_status = None
