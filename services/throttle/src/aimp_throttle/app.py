"""Wiring of the throttle service: SQL stores, Redis, rule publisher, checker, routes.

The service owns the throttle rules (policies, plans, assignments) in SQL and
publishes them to Redis, from where every gateway applies them within a
second; the gateway enforces them on each call with one Redis script call.
``POST /v1/check`` runs the same decision for callers other than the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aimp_core.app import create_service_app
from aimp_core.auth import JwksVerifier
from aimp_core.db import make_engine
from aimp_core.ratelimit.engine import Limiter
from aimp_core.ratelimit.policies import LimitFields

from . import api, check_api, plans_api
from .auth import TokenVerifier
from .checker import Checker
from .plan_store import PlanStore
from .publisher import RulePublisher
from .settings import ThrottleSettings
from .store import PolicyStore

DESCRIPTION = (
    "Throttle rules per client and service: rate (calls per second) and burst, daily and "
    "monthly quotas, concurrency, warm-up, and what to do when Redis is down. Policies "
    "limit a client, a service, both, or each client; plans are named limits clients are "
    "assigned to. Every gateway enforces them within 1 s of a change, exactly, with one "
    "Redis round trip per call. Reads need role operator or admin, changes need admin; "
    "POST /v1/check decides a call for callers other than the gateway."
)


def create_app(
    settings: ThrottleSettings | None = None, *, verifier: TokenVerifier | None = None
) -> FastAPI:
    """The throttle app; ``verifier`` defaults to the gateway's JWKS."""
    settings = settings or ThrottleSettings()
    engine = make_engine(settings.sql_url("throttle"))
    store, plans = PolicyStore(engine), PlanStore(engine)
    timeout = settings.throttle_redis_socket_timeout_s
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    publisher = RulePublisher(store, plans, redis, interval_s=settings.throttle_publish_interval_s)
    # Not a member: the gateways carry the traffic and share each limit among themselves.
    limiter = Limiter(redis, lease_ttl_s=settings.throttle_lease_ttl_s, member=False)
    default = LimitFields(
        rate=settings.throttle_default_rate_per_s, burst=settings.throttle_default_burst
    )
    checker = Checker(limiter, publisher, default)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(store.create_schema)
        await publisher.publish_now()
        await publisher.start()
        await limiter.start()
        try:
            yield
        finally:
            await limiter.stop()
            await publisher.stop()
            await redis.aclose()
            engine.dispose()

    async def sql_ready() -> None:
        await asyncio.to_thread(store.ping)

    async def redis_ready() -> None:
        await redis.ping()

    app = create_service_app(
        "throttle",
        ready_checks={"sql": sql_ready, "redis": redis_ready},
        lifespan=lifespan,
        description=DESCRIPTION,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.plans = plans
    app.state.publisher = publisher
    app.state.checker = checker
    app.state.verifier = verifier or JwksVerifier(
        settings.jwks_url, issuer=settings.token_issuer, timeout_s=settings.http_timeout_s
    )
    app.include_router(api.router)
    app.include_router(plans_api.router)
    app.include_router(check_api.router)
    return app
