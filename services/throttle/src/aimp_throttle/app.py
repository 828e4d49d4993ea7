"""Wiring of the throttle service: SQL store, token verifier, routes.

This service stores throttle policies. It does not enforce them, and neither
does the gateway yet: enforcement (the rate algorithm in the gateway, one
atomic Redis round trip per call) comes in a later issue. Until then a stored
policy has no effect on traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aimp_core.app import create_service_app
from aimp_core.auth import JwksVerifier
from aimp_core.db import make_engine

from .api import router
from .auth import TokenVerifier
from .settings import ThrottleSettings
from .store import PolicyStore

DESCRIPTION = (
    "Throttle policies per client and service: rate (calls per second), burst, daily quota, "
    "concurrency, and what to do when Redis is down. Reads need role operator or admin, "
    "changes need admin.\n\n"
    "**Not enforced yet**: policies are stored and served here, but neither this service "
    "nor the gateway applies them to traffic yet; enforcement in the gateway comes later."
)


def create_app(
    settings: ThrottleSettings | None = None, *, verifier: TokenVerifier | None = None
) -> FastAPI:
    """The throttle app; ``verifier`` defaults to the gateway's JWKS."""
    settings = settings or ThrottleSettings()
    store = PolicyStore(make_engine(settings.sql_url("throttle")))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(store.create_schema)
        try:
            yield
        finally:
            store.engine.dispose()

    async def sql_ready() -> None:
        await asyncio.to_thread(store.ping)

    app = create_service_app(
        "throttle", ready_checks={"sql": sql_ready}, lifespan=lifespan, description=DESCRIPTION
    )
    app.state.settings = settings
    app.state.store = store
    app.state.verifier = verifier or JwksVerifier(
        settings.jwks_url, issuer=settings.token_issuer, timeout_s=settings.http_timeout_s
    )
    app.include_router(router)
    return app
