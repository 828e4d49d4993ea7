"""Wires the registry: store, change stream, persistence, replication, eviction, API.

Start-up order (the lifespan): load the persisted state (leases restart now), sync
from a reachable peer, start replication, start counting renewals afresh, start
the eviction sweeper; then serve. On SIGTERM open streams are ended at once so
readers move on, and what is still unwritten is persisted before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from types import FrameType

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from aimp_core.app import create_service_app
from aimp_registry import metrics
from aimp_registry.api import router as write_router
from aimp_registry.eviction import Evictor, PreservationConfig, run_eviction
from aimp_registry.interface import RegistryStore
from aimp_registry.model import Clock
from aimp_registry.persistence import StateDatabase, StateWriter
from aimp_registry.preservation import RenewalMeter
from aimp_registry.read_api import router as read_router
from aimp_registry.replication import ReplicationConfig, Replicator
from aimp_registry.settings import RegistrySettings
from aimp_registry.store import InMemoryRegistry
from aimp_registry.stream import ChangeHub
from aimp_registry.stream_api import router as stream_router

log = logging.getLogger(__name__)

#: Responses smaller than this are sent as they are: compressing a heartbeat's empty
#: answer or one instance costs more than it saves; a registry listing is far larger.
GZIP_MINIMUM_BYTES = 1024


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _end_streams_on_signals(hub: ChangeHub) -> Callable[[], None]:
    """Chain a handler before uvicorn's SIGTERM/SIGINT ones that ends every stream, so
    the graceful shutdown does not wait for readers that never hang up."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, tuple[Callable[[int, FrameType | None], object], object]] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(
            signum: int,
            frame: FrameType | None,
            previous: Callable[[int, FrameType | None], object] = previous,
        ) -> None:
            loop.call_soon_threadsafe(hub.close_all)
            previous(signum, frame)

        signal.signal(sig, handler)
        installed[sig] = (handler, previous)

    def restore() -> None:
        for sig, (handler, previous) in installed.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)  # type: ignore[arg-type]

    return restore


def create_app(
    settings: RegistrySettings | None = None,
    *,
    clock: Clock = wall_clock_ms,
    store: RegistryStore | None = None,
) -> FastAPI:
    """The registry app; background work runs while the app's lifespan is open."""
    cfg = settings or RegistrySettings()
    registry: RegistryStore = store or InMemoryRegistry(
        clock,
        lease_duration_s=cfg.registry_lease_duration_s,
        renewal_interval_s=cfg.registry_renewal_interval_s,
        delta_retention_s=cfg.registry_delta_retention_s,
    )
    hub = ChangeHub(max_queue=cfg.registry_stream_queue_max)
    registry.add_listener(hub.publish)
    writer: StateWriter | None = None
    if cfg.registry_persistence:
        writer = StateWriter(registry, delay_s=cfg.registry_persist_delay_s)
        registry.add_listener(writer.on_change)
    meter = RenewalMeter(cfg.registry_renewal_window_s)
    evictor = Evictor(
        registry,
        meter,
        PreservationConfig(
            enabled=cfg.registry_self_preservation,
            ratio=cfg.registry_renewal_threshold_ratio,
            window_s=cfg.registry_renewal_window_s,
            min_instances=cfg.registry_self_preservation_min_instances,
        ),
        clock,
    )
    peers = cfg.peer_urls()
    replicator = (
        Replicator(
            peers,
            registry,
            clock,
            node_id=hub.epoch,
            config=ReplicationConfig(
                queue_max=cfg.registry_replication_queue_max,
                batch_max=cfg.registry_replication_batch_max,
                concurrency=cfg.registry_replication_concurrency,
                timeout_s=cfg.registry_replication_timeout_s,
                attempts=cfg.registry_replication_attempts,
            ),
        )
        if peers
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        db: StateDatabase | None = None
        if writer is not None:
            db = await asyncio.to_thread(StateDatabase, cfg.state_url())
            loaded = await writer.open(db)
            log.info(
                "persisted state loaded",
                extra={"instances": len(loaded.records), "version": loaded.version},
            )
        if replicator is not None:
            await replicator.sync_from_peers(cfg.registry_peer_sync_timeout_s)
            replicator.start()
        evictor.restart_counting()
        metrics.publish_instances(registry.status_counts())
        sweeper = asyncio.create_task(
            run_eviction(evictor, cfg.registry_eviction_interval_s), name="registry-eviction"
        )
        restore_signals = _end_streams_on_signals(hub)
        try:
            yield
        finally:
            restore_signals()
            hub.close_all()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            if replicator is not None:
                await replicator.stop()
            if writer is not None and db is not None:
                await writer.stop()
                db.close()

    app = create_service_app(
        "registry",
        lifespan=lifespan,
        description="Eureka-compatible service registry (REST API under /eureka).",
    )
    app.state.settings = cfg
    app.state.store = registry
    app.state.clock = clock
    app.state.hub = hub
    app.state.meter = meter
    app.state.evictor = evictor
    app.state.replicator = replicator
    app.state.writer = writer
    app.include_router(read_router)
    app.include_router(write_router)
    app.include_router(stream_router)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_BYTES)
    metrics.publish_instances(registry.status_counts())
    return app
