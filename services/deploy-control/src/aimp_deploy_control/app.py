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
from aimp_deploy_control.backends import make_backend, make_inventory
from aimp_deploy_control.inventory_api import router as inventory_router
from aimp_deploy_control.loadtest_api import router as loadtest_router
from aimp_deploy_control.logs_api import router as logs_router
from aimp_deploy_control.model_api import router as model_router
from aimp_deploy_control.model_db import ModelDB
from aimp_deploy_control.model_store import ModelStore
from aimp_deploy_control.models import ModelRegistry
from aimp_deploy_control.releases import Releases
from aimp_deploy_control.revision_settings import RevisionSettings
from aimp_deploy_control.revision_start import RevisionStarter
from aimp_deploy_control.rollout import RolloutRunner, UpProbe
from aimp_deploy_control.service import Deployments
from aimp_deploy_control.settings import DeployControlSettings
from aimp_deploy_control.store import DeploymentStore
from aimp_deploy_control.traffic import GatewayTraffic
from aimp_deploy_control.warmup import Warmer

SERVICE = "deploy-control"


def create_app(
    settings: DeployControlSettings,
    *,
    verifier: Verifier | None = None,
    backend: PodBackend | None = None,
) -> FastAPI:
    store = DeploymentStore(make_engine(settings.sql_url(SERVICE)))
    backend = backend or make_backend(settings)
    probe = UpProbe(settings.registry_url, timeout_s=settings.http_timeout_s)
    runner = RolloutRunner(
        backend,
        probe,
        ready_timeout_s=settings.deploy_control_rollout_ready_timeout_s,
        poll_interval_s=settings.deploy_control_rollout_poll_interval_s,
    )
    models = ModelRegistry(
        ModelDB(store.engine),
        ModelStore(settings.model_store_url, settings.model_cache_dir),
        settings,
    )
    revision_settings = RevisionSettings()
    traffic = GatewayTraffic(
        revision_settings, revision_settings.gateway_url or settings.token_issuer
    )
    starter = RevisionStarter(
        store,
        backend,
        probe,
        Warmer(revision_settings),
        revision_settings,
        models,
        poll_interval_s=settings.deploy_control_rollout_poll_interval_s,
    )
    inventory = make_inventory(backend)
    deployments = Deployments(
        store,
        backend,
        settings,
        runner,
        models,
        starter=starter,
        inventory=inventory,
        traffic=traffic,
    )
    releases = Releases(deployments, traffic, starter, revision_settings)

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
            await traffic.aclose()
            store.engine.dispose()

    app = create_service_app(
        SERVICE,
        ready_checks={"database": database},
        lifespan=lifespan,
        description="Deploys model files as services and runs their pods.",
    )
    app.state.deployments = deployments
    app.state.releases = releases
    app.state.models = models
    app.state.inventory = inventory
    app.state.verifier = verifier or JwksVerifier(
        settings.jwks_url, issuer=settings.token_issuer, timeout_s=settings.http_timeout_s
    )
    app.include_router(router)
    app.include_router(model_router)
    app.include_router(inventory_router)
    app.include_router(logs_router)
    app.include_router(loadtest_router)  # its lifespan runs inside the app's
    return app
