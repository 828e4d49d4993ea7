"""Wires the registry: settings, the in-memory store, the Eureka API and eviction."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI

from aimp_core.app import create_service_app
from aimp_registry import metrics
from aimp_registry.api import router
from aimp_registry.eviction import run_eviction
from aimp_registry.interface import RegistryStore
from aimp_registry.model import Clock
from aimp_registry.settings import RegistrySettings
from aimp_registry.store import InMemoryRegistry


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def create_app(
    settings: RegistrySettings | None = None,
    *,
    clock: Clock = wall_clock_ms,
    store: RegistryStore | None = None,
) -> FastAPI:
    """The registry app; the eviction task runs while the app's lifespan is open."""
    cfg = settings or RegistrySettings()
    registry: RegistryStore = store or InMemoryRegistry(
        clock,
        lease_duration_s=cfg.registry_lease_duration_s,
        renewal_interval_s=cfg.registry_renewal_interval_s,
        delta_retention_s=cfg.registry_delta_retention_s,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(
            run_eviction(registry, cfg.registry_eviction_interval_s), name="registry-eviction"
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = create_service_app(
        "registry",
        lifespan=lifespan,
        description="Eureka-compatible service registry (REST API under /eureka).",
    )
    app.state.settings = cfg
    app.state.store = registry
    app.state.clock = clock
    app.include_router(router)
    metrics.publish_instances(registry.status_counts())
    return app
