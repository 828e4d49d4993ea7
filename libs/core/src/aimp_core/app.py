"""The service app factory: every service gets the same health, metrics and errors.

``GET /healthz`` answers while the process lives; ``GET /readyz`` runs the
service's readiness checks (each with a timeout) and names the one that failed;
``GET /metrics`` is Prometheus text; errors are problem+json.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from aimp_core.errors import install_error_handlers, problem
from aimp_core.metrics import MetricsMiddleware, metrics_body
from aimp_core.tracing import TraceMiddleware, setup_tracing

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[None]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

#: A readiness check that takes longer than this counts as failed.
READY_CHECK_TIMEOUT_S = 2.0


def create_service_app(
    service: str,
    *,
    ready_checks: Mapping[str, ReadyCheck] | None = None,
    lifespan: Lifespan | None = None,
    oip_prefix: str | None = None,
    description: str = "",
) -> FastAPI:
    """Build a FastAPI app with the platform's common endpoints and middleware."""
    setup_tracing(service)
    checks = dict(ready_checks or {})

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("starting", extra={"service": service})
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield
        log.info("stopped", extra={"service": service})

    # TraceMiddleware owns the server span; FastAPI's own telemetry would add a second one.
    app = FastAPI(
        title=f"aimp {service}",
        description=description,
        lifespan=_lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app, oip_prefix=oip_prefix)

    @app.get("/healthz", tags=["ops"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": service}

    @app.get("/readyz", tags=["ops"], summary="Every dependency answers")
    async def readyz() -> Response:
        failures: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), READY_CHECK_TIMEOUT_S)
            except Exception as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"[:300]
        if failures:
            detail = "; ".join(f"{k} is not reachable ({v})" for k, v in failures.items())
            return problem(503, "Not ready", detail, request_id="", headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready", "service": service, "checks": list(checks)})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics() -> Response:
        body, content_type = metrics_body()
        return Response(body, media_type=content_type)

    app.add_middleware(MetricsMiddleware, service=service)
    app.add_middleware(TraceMiddleware, service=service)
    return app


def state(app: FastAPI) -> Any:
    """The app's state object, typed loosely for wiring code."""
    return app.state
