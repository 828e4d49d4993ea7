"""Wiring: settings in, a ready ASGI app out.

:func:`build_app` does the synchronous start-up work (credentials check,
signing key, SQL tables, client upsert) and raises
:class:`~aimp_gateway.credentials.StartupRefused` when the gateway must not
start; the lifespan opens the network parts (upstream pool, registry
discovery, outlier prober, Kafka publisher) and closes them on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from aimp_core.app import create_service_app
from aimp_core.audit import AuditLog
from aimp_core.db import make_engine
from aimp_core.events import TOPIC_REQUESTS
from aimp_core.kafka import EventPublisher, ensure_topics
from aimp_core.ratelimit.policies import LimitFields
from aimp_core.registry_client import EurekaClient, Instance
from aimp_gateway import (
    admin_api,
    api,
    config_api,
    config_items_api,
    fuse_api,
    identity_api,
    throttle_admin,
)
from aimp_gateway.asgi import GatewayApp
from aimp_gateway.auth_wiring import build_identity
from aimp_gateway.backflow import build_sampler
from aimp_gateway.bootstrap import apply_credentials
from aimp_gateway.config_store import ConfigStore
from aimp_gateway.config_sync import ConfigCenter, ConfigFollower, load_snapshot
from aimp_gateway.credentials import load_credentials
from aimp_gateway.discovery import Discovery
from aimp_gateway.outlier import OutlierPolicy
from aimp_gateway.policy import LiveConfig
from aimp_gateway.proxy import DataPlane
from aimp_gateway.router import Router
from aimp_gateway.settings import GatewaySettings
from aimp_gateway.state import Gateway
from aimp_gateway.store import Store
from aimp_gateway.throttle import Throttle, make_redis
from aimp_gateway.upstream import Upstream, tcp_accepts

log = logging.getLogger(__name__)

SERVICE = "gateway"
DESCRIPTION = """The one door to aimp. Public: OAuth2 tokens, the Open Inference Protocol
under /v2/models/{model}/... and generic calls under /svc/{service}/{path}, both forwarded
to an UP instance after token, role and rate checks. Admin: /admin/..."""


async def _ensure_topics(bootstrap: str) -> None:
    """Create the request topic if missing; Kafka may come later, publishing retries anyway."""
    try:
        await ensure_topics(bootstrap, [TOPIC_REQUESTS])
    except Exception as exc:
        log.warning("could not ensure Kafka topic %s: %s", TOPIC_REQUESTS, exc)


def build_router(settings: GatewaySettings) -> Router:
    """Routing state with the configured outlier policy, probing with a TCP connect."""
    policy = OutlierPolicy(
        consecutive_connect_failures=settings.gateway_outlier_consecutive_connect_failures,
        consecutive_gateway_errors=settings.gateway_outlier_consecutive_gateway_errors,
        consecutive_5xx=settings.gateway_outlier_consecutive_5xx,
        base_ejection_s=settings.gateway_outlier_base_ejection_s,
        max_ejection_s=settings.gateway_outlier_max_ejection_s,
        max_ejected_percent=settings.gateway_outlier_max_ejected_percent,
    )
    timeout_s = settings.gateway_upstream_connect_timeout_s

    async def probe(instance: Instance) -> bool:
        return await tcp_accepts(instance.ip, instance.port, timeout_s=timeout_s)

    return Router(policy, probe=probe, zone=settings.gateway_zone)


def build_throttle(settings: GatewaySettings, redis: Redis) -> Throttle:
    """The throttle, with the settings-based default limit for clients no rule covers."""
    default = LimitFields(
        rate=settings.gateway_rate_per_s,
        burst=settings.gateway_rate_burst,
        on_redis_down="open" if settings.gateway_throttle_fail_open else "closed",
    )
    return Throttle(
        redis,
        default,
        lease_ttl_s=settings.gateway_throttle_lease_ttl_s,
        probe_interval_s=settings.gateway_throttle_probe_interval_s,
        heartbeat_s=settings.gateway_throttle_heartbeat_s,
        member_ttl_s=settings.gateway_throttle_member_ttl_s,
        rules_poll_s=settings.gateway_throttle_rules_poll_s,
        enabled=settings.gateway_throttle_enabled,
    )


def build_app(settings: GatewaySettings) -> GatewayApp:
    """The gateway's ASGI app; raises ``StartupRefused`` on unsafe or broken credentials."""
    creds = load_credentials(settings.credentials_path)
    store = Store(make_engine(settings.sql_url("gateway")))
    store.create_tables()
    apply_credentials(store, creds)

    redis = make_redis(settings.redis_url, socket_timeout_s=settings.gateway_redis_socket_timeout_s)
    # -- identity (keys, tokens, revocation, lockout, external IdP): auth_wiring.py --
    identity = build_identity(settings, store, redis)
    verifier = identity.verifier
    throttle = build_throttle(settings, redis)
    throttle_forward = throttle_admin.ThrottleAdmin(
        settings.throttle_base_url, timeout_s=settings.http_timeout_s
    )
    router = build_router(settings)
    discovery = Discovery(
        EurekaClient(settings.registry_url, timeout_s=settings.http_timeout_s),
        on_update=router.update,
        poll_interval_s=settings.gateway_registry_poll_s,
        stream_retry_s=settings.gateway_registry_stream_retry_s,
        backoff_min_s=settings.gateway_registry_backoff_min_s,
        backoff_max_s=settings.gateway_registry_backoff_max_s,
    )
    upstream = Upstream(
        connect_timeout_s=settings.gateway_upstream_connect_timeout_s,
        total_timeout_s=settings.gateway_upstream_total_timeout_s,
        max_connections=settings.gateway_upstream_max_connections,
        keepalive_s=settings.gateway_upstream_keepalive_s,
        stream_threshold_bytes=settings.gateway_stream_threshold_bytes,
        stream_idle_timeout_s=settings.gateway_stream_idle_timeout_s,
    )
    # Events outlive a Kafka outage and a gateway crash during one: they spool to disk.
    publisher = EventPublisher(
        settings.kafka_bootstrap,
        spool_dir=settings.home / "spool" / f"gateway-{settings.gateway_port}",
    )
    backflow = build_sampler(settings, publisher)
    # The config center: versions in the gateway's SQL database, loaded now, followed live.
    config_store = ConfigStore(store.engine)
    config_store.create_tables()
    live = LiveConfig(load_snapshot(config_store))
    follower = ConfigFollower(
        redis,
        config_store,
        live,
        poll_s=settings.gateway_config_poll_s,
        sql_poll_s=settings.gateway_config_sql_poll_s,
    )
    # The config center's throttle block overrides the settings' default limit, live.
    throttle.config_changed(live.snapshot)
    follower.listeners.append(throttle.config_changed)
    plane = DataPlane(
        verifier=verifier,
        throttle=throttle,
        router=router,
        upstream=upstream,
        publisher=publisher,
        max_body_bytes=settings.gateway_max_body_bytes,
        body_timeout_s=settings.gateway_body_timeout_s,
        instance_header=settings.gateway_instance_header,
        backflow=backflow,
        config=live,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await upstream.start()
        await publisher.start()
        await backflow.start()
        topics = asyncio.create_task(_ensure_topics(settings.kafka_bootstrap))
        router.start()
        await discovery.start(wait_s=settings.gateway_registry_start_wait_s)
        await throttle.start()
        await identity.start()
        await follower.start()
        # Everything built so far lives as long as the process: keep it out of the
        # garbage collector's full passes (~0.1 s each with FastAPI, pydantic and
        # SQLAlchemy loaded), which otherwise show up as p99 spikes under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            topics.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await topics
            await discovery.stop()
            await router.stop()
            await upstream.close()
            await backflow.stop()
            await publisher.stop(flush_timeout_s=settings.graceful_shutdown_s / 2)
            await follower.stop()
            await identity.stop()
            await throttle.stop()
            await throttle_forward.aclose()
            await redis.aclose()

    app = create_service_app(
        SERVICE,
        ready_checks={"registry": discovery.check, "redis": throttle.ping},
        lifespan=lifespan,
        oip_prefix="/v2",
        description=DESCRIPTION,
    )
    app.state.gateway = Gateway(
        settings=settings,
        store=store,
        token_endpoint=identity.endpoint,
        plane=plane,
        discovery=discovery,
        identity=identity,
        audit=AuditLog(publisher),
    )
    app.include_router(api.router)
    app.include_router(admin_api.router)
    app.include_router(fuse_api.router)
    app.include_router(identity_api.router)
    app.state.throttle_admin = throttle_forward
    app.state.config_center = ConfigCenter(config_store, redis, follower)
    app.include_router(config_api.router)
    app.include_router(config_items_api.router)
    app.include_router(throttle_admin.router)
    return GatewayApp(app, plane, service=SERVICE)
