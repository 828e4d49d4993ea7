"""Wires the sidecar: the common service app, the proxy route and the parts' lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aimp_core.app import create_service_app
from aimp_core.errors import ServiceUnavailable
from aimp_registry_sidecar.api import router
from aimp_registry_sidecar.callers import Verifier
from aimp_registry_sidecar.settings import SidecarSettings
from aimp_registry_sidecar.sidecar import Sidecar

SERVICE = "registry-sidecar"


def create_app(settings: SidecarSettings, *, verifier: Verifier | None = None) -> FastAPI:
    sidecar = Sidecar(settings, verifier=verifier)

    async def upstream_ready() -> None:
        if not await sidecar.upstream.ready():
            raise ServiceUnavailable(
                f"the model server at {sidecar.upstream.base_url} is not ready"
            )

    async def accepting_calls() -> None:
        if sidecar.gate.draining:
            raise ServiceUnavailable("the sidecar is draining before it stops")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await sidecar.start()
        try:
            yield
        finally:
            # Normally done already on SIGTERM (see serve.py); here for every other way out.
            await sidecar.stop()
            await sidecar.aclose()

    app = create_service_app(
        SERVICE,
        ready_checks={"upstream": upstream_ready, "accepting": accepting_calls},
        lifespan=lifespan,
        oip_prefix="/v2",
        description="Registers one inference pod and proxies its calls with a concurrency limit.",
    )
    app.state.sidecar = sidecar
    app.include_router(router)
    return app
