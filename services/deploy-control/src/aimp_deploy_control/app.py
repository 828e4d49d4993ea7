"""Wires deploy-control: store, backend, use-cases, token verification and the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text

from aimp_core.app import create_service_app
from aimp_core.auth import JwksVerifier
from aimp_core.db import make_engine
from aimp_deploy_control.api import Verifier, router
from aimp_deploy_control.backend import PodBackend
from aimp_deploy_control.local_backend import LocalProcessBackend
from aimp_deploy_control.rollout import RolloutRunner, UpProbe
from aimp_deploy_control.service import Deployments
from aimp_deploy_control.settings import DeployControlSettings
from aimp_deploy_control.store import DeploymentStore

SERVICE = "deploy-control"


def create_app(
    settings: DeployControlSettings,
    *,
    verifier: Verifier | None = None,
    backend: PodBackend | None = None,
) -> FastAPI:
    store = DeploymentStore(make_engine(settings.sql_url(SERVICE)))
    backend = backend or LocalProcessBackend(settings)
    probe = UpProbe(settings.registry_url, timeout_s=settings.http_timeout_s)
    runner = RolloutRunner(
        backend,
        probe,
        ready_timeout_s=settings.deploy_control_rollout_ready_timeout_s,
        poll_interval_s=settings.deploy_control_rollout_poll_interval_s,
    )
    deployments = Deployments(store, backend, settings, runner)

    def ping_db() -> None:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    async def database() -> None:
        await asyncio.to_thread(ping_db)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(store.create_schema)
        await backend.start()
        await deployments.restore()
        try:
            yield
        finally:
            await deployments.close()  # rollouts stop between steps
            await backend.close()  # stops every pod gracefully: sidecars drain first
            await probe.aclose()
            store.engine.dispose()

    app = create_service_app(
        SERVICE,
        ready_checks={"database": database},
        lifespan=lifespan,
        description="Deploys model files as services and runs their pods.",
    )
    app.state.deployments = deployments
    app.state.verifier = verifier or JwksVerifier(
        settings.jwks_url, issuer=settings.token_issuer, timeout_s=settings.http_timeout_s
    )
    app.include_router(router)
    return app
