"""Keeps the routing table in step with the registry: a full read every interval.

While the registry is unreachable the last table stays in use (pods keep
serving), and the outage is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx

from aimp_core.registry_client import EurekaClient
from aimp_gateway.routing import RoutingTable, build_table

log = logging.getLogger(__name__)


class Discovery:
    """Owns the current :class:`RoutingTable`; readers just read ``table``."""

    def __init__(self, client: EurekaClient, *, interval_s: float) -> None:
        self.client = client
        self.interval_s = interval_s
        self.table = RoutingTable()
        self._last_ok = 0.0
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def fresh(self) -> bool:
        """Has the table been read from the registry recently (3 intervals, at least 3 s)?"""
        return time.monotonic() - self._last_ok < max(3 * self.interval_s, 3.0)

    async def refresh(self) -> None:
        """Read the registry once and swap in the new table (raises on failure)."""
        instances = await self.client.applications()
        self.table = build_table(instances)
        self._last_ok = time.monotonic()
        if self._failing:
            self._failing = False
            log.info("registry answers again; routing table refreshed")

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            if not self._failing:
                self._failing = True
                log.warning(
                    "cannot read the registry, routing on the last known table: %s",
                    f"{type(exc).__name__}: {exc}"[:300],
                )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._refresh_logged()

    async def start(self) -> None:
        """First read now (so calls route at once), then every interval in the background."""
        await self._refresh_logged()
        self._task = asyncio.create_task(self._run(), name="registry-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()
