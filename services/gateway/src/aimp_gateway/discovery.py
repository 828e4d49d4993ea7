"""Keeps the router in step with the registry: its change stream, else polling.

Mode ``stream``: follow the aimp registry's ``GET /eureka/stream`` (a snapshot,
then every change within milliseconds) through
:class:`aimp_core.registry_client.RegistryView`, and hand the router the new
instance list after each event. Mode ``poll``: a registry without the stream
(404, 405, 406 or 501 there, e.g. a Netflix Eureka server) is read with
``GET /eureka/apps`` every poll interval; the stream is tried again now and then.

Losing the registry never empties the table: the last instances stay in use
(pods keep serving) and the stream is reconnected with exponential backoff and
jitter, resuming from the last event it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

import httpx
from prometheus_client import Gauge

from aimp_core.registry_client import EurekaClient, Instance, RegistryEvent, RegistryView

log = logging.getLogger(__name__)

MODE_STARTING, MODE_STREAM, MODE_POLL = "starting", "stream", "poll"
#: Answers to ``GET /eureka/stream`` that mean "this registry has no change stream".
NO_STREAM_STATUSES = frozenset({404, 405, 406, 501})
_FAILURES = (httpx.HTTPError, httpx.StreamError, ValueError, KeyError, TypeError)

MODE = Gauge(
    "aimp_gateway_registry_mode",
    "1 for the way the gateway follows the registry now (stream or poll).",
    ["mode"],
)
CONNECTED = Gauge(
    "aimp_gateway_registry_connected",
    "1 while the registry answers (stream open, or the last poll succeeded).",
)

OnUpdate = Callable[[list[Instance]], None]


class NoStream(Exception):
    """The registry answered the stream request with a status meaning it has none."""


class Discovery:
    """Feeds ``on_update`` with the registry's instances (every status) on each change."""

    def __init__(
        self,
        client: EurekaClient,
        *,
        on_update: OnUpdate,
        poll_interval_s: float,
        stream_retry_s: float,
        backoff_min_s: float = 0.05,
        backoff_max_s: float = 5.0,
        read_timeout_s: float = 35.0,
    ) -> None:
        self.client = client
        self.on_update = on_update
        self.poll_interval_s = poll_interval_s
        self.stream_retry_s = stream_retry_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.read_timeout_s = read_timeout_s
        self.view = RegistryView(client)
        self.mode = MODE_STARTING
        self.connected = False
        self._last_poll_ok = float("-inf")
        self._failing = False
        self._has_data = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- state -------------------------------------------------------------------------

    @property
    def fresh(self) -> bool:
        """Is the table current: the stream is open, or a poll succeeded lately?"""
        if self.mode == MODE_STREAM:
            return self.connected
        stale_after_s = max(3 * self.poll_interval_s, 3.0)
        return time.monotonic() - self._last_poll_ok < stale_after_s

    async def check(self) -> None:
        """For ``/readyz``: raises when the registry cannot be reached now."""
        if not self.fresh:
            await self.client.ping()

    def _set_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        self.mode = mode
        for name in (MODE_STREAM, MODE_POLL):
            MODE.labels(name).set(1 if name == mode else 0)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        CONNECTED.set(1 if connected else 0)

    def _apply(self, event: RegistryEvent) -> None:
        self.view.apply(event)
        self.on_update(self.view.instances())
        self._has_data.set()

    # -- stream mode ------------------------------------------------------------------

    async def _follow_stream(self) -> bool:
        """Apply stream events until the stream ends; True if it delivered any."""
        delivered = False
        try:
            async for event in self.client.watch(
                self.view.last_event_id, read_timeout_s=self.read_timeout_s
            ):
                if not delivered:
                    delivered = True
                    self._set_connected(True)
                    if self.mode != MODE_STREAM or self._failing:
                        log.info(
                            "discovery mode: stream (following the registry's change stream)",
                            extra={"registry": self.client.base_url},
                        )
                    self._set_mode(MODE_STREAM)
                    self._failing = False
                self._apply(event)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in NO_STREAM_STATUSES:
                raise NoStream(str(exc.response.status_code)) from None
            raise
        finally:
            self._set_connected(False)
        return delivered

    def _lost(self, reason: str) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "registry unreachable or stream lost; routing on the last known instances "
                "and reconnecting: %s",
                reason[:300],
                extra={"registry": self.client.base_url},
            )

    # -- poll mode ----------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Read every instance once and apply it as a snapshot (raises on failure)."""
        instances = await self.client.applications()
        version = self.view.version or 0
        self._apply(RegistryEvent("snapshot", version, None, tuple(instances)))
        self._last_poll_ok = time.monotonic()
        self._set_connected(True)
        if self._failing:
            self._failing = False
            log.info("registry answers again", extra={"registry": self.client.base_url})

    async def _poll_for(self, duration_s: float) -> None:
        until = time.monotonic() + duration_s
        while True:
            try:
                await self.poll_once()
            except _FAILURES as exc:
                self._set_connected(False)
                self._lost(f"{type(exc).__name__}: {exc}")
            if time.monotonic() + self.poll_interval_s > until:
                return
            await asyncio.sleep(self.poll_interval_s)

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.backoff_min_s
        while True:
            try:
                if await self._follow_stream():
                    delay = self.backoff_min_s
                self._lost("the registry ended the change stream")
            except NoStream as exc:
                if self.mode != MODE_POLL:
                    log.info(
                        "discovery mode: poll (the registry has no change stream: HTTP %s on "
                        "/stream); reading GET /apps every %g s",
                        exc,
                        self.poll_interval_s,
                        extra={"registry": self.client.base_url},
                    )
                self._set_mode(MODE_POLL)
                await self._poll_for(self.stream_retry_s)
                continue
            except _FAILURES as exc:
                self._lost(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff_max_s)

    async def start(self, *, wait_s: float) -> None:
        """Start following; wait up to ``wait_s`` for the first instances (so calls route)."""
        self._task = asyncio.create_task(self._run(), name="registry-discovery")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._has_data.wait(), wait_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.client.aclose()
