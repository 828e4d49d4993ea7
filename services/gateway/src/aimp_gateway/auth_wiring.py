"""Wiring of the identity parts: key ring, issuer, verifier, token endpoint, revocation,
lockout and the optional external provider, with their background loops."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import redis
from redis.asyncio import Redis as AsyncRedis
from redis.backoff import NoBackoff
from redis.retry import Retry

from aimp_core.auth import LEEWAY_S
from aimp_core.ratelimit.loops import Loop
from aimp_gateway.credentials import StartupRefused
from aimp_gateway.external_idp import ClaimMapping, ExternalIdp, mapping_problem
from aimp_gateway.keys import KeyRing
from aimp_gateway.lockout import LockoutPolicy
from aimp_gateway.login_guard import LoginGuard
from aimp_gateway.oauth import RefreshPolicy, TokenEndpoint
from aimp_gateway.refresh_store import RefreshStore
from aimp_gateway.revocation import RevocationFollower, RevocationWriter
from aimp_gateway.settings import GatewaySettings
from aimp_gateway.store import Store
from aimp_gateway.token_control import TokenControl
from aimp_gateway.tokens import TokenIssuer, TokenVerifier

log = logging.getLogger(__name__)


def build_external(settings: GatewaySettings) -> ExternalIdp | None:
    """The external provider from settings; :class:`StartupRefused` when half-configured."""
    if not settings.gateway_external_issuer:
        return None
    if not settings.gateway_external_jwks_url or not settings.gateway_external_audience:
        raise StartupRefused(
            "AIMP_GATEWAY_EXTERNAL_ISSUER is set, so AIMP_GATEWAY_EXTERNAL_JWKS_URL and "
            "AIMP_GATEWAY_EXTERNAL_AUDIENCE must be set too"
        )
    mapping = ClaimMapping(
        role_claim=settings.gateway_external_role_claim,
        role_map=settings.gateway_external_role_map,
        client_claim=settings.gateway_external_client_claim,
    )
    problem = mapping_problem(mapping, settings.gateway_external_algorithms)
    if problem:
        raise StartupRefused(f"external OpenID provider settings: {problem}")
    return ExternalIdp(
        issuer=settings.gateway_external_issuer,
        jwks_url=settings.gateway_external_jwks_url,
        audience=settings.gateway_external_audience,
        mapping=mapping,
        algorithms=settings.gateway_external_algorithms,
        timeout_s=settings.http_timeout_s,
        refresh_s=settings.gateway_external_jwks_refresh_s,
    )


def sync_redis(settings: GatewaySettings) -> redis.Redis:
    """For the token endpoint's worker threads: bounded waits, no retries."""
    timeout_s = settings.gateway_redis_socket_timeout_s
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


@dataclass
class Identity:
    ring: KeyRing
    issuer: TokenIssuer
    verifier: TokenVerifier
    endpoint: TokenEndpoint
    control: TokenControl
    external: ExternalIdp | None
    follower: RevocationFollower
    sync_redis: redis.Redis
    keys_poll_s: float = 1.0
    keys_loop: Loop | None = None

    async def start(self) -> None:
        await self.follower.start()
        if self.external is not None:
            await self.external.start()
        self.keys_loop = Loop("signing-keys", self._reload_keys)
        self.keys_loop.start()

    async def _reload_keys(self) -> None:
        assert self.keys_loop is not None
        await self.keys_loop.sleep(self.keys_poll_s)
        if self.ring.load():
            log.info("signing keys changed", extra={"active": self.ring.active.kid})

    async def stop(self) -> None:
        if self.keys_loop is not None:
            await self.keys_loop.stop()
        if self.external is not None:
            await self.external.stop()
        await self.follower.stop()
        with contextlib.suppress(Exception):
            self.sync_redis.close()


def build_identity(settings: GatewaySettings, store: Store, redis_async: AsyncRedis) -> Identity:
    """Everything that issues, verifies and revokes tokens."""
    ttl_s = settings.gateway_access_token_ttl_s
    ring = KeyRing(settings.signing_key_path, keep_s=ttl_s + LEEWAY_S)
    external = build_external(settings)
    issuer = TokenIssuer(ring, issuer=settings.token_issuer, ttl_s=ttl_s)
    verifier = TokenVerifier(
        ring,
        issuer=settings.token_issuer,
        cache_size=settings.gateway_token_cache_size,
        external=external,
    )
    client = sync_redis(settings)
    writer = RevocationWriter(client)
    refresh_store = RefreshStore(store.engine)
    refresh_store.create_tables()
    guard = LoginGuard(
        client,
        LockoutPolicy(
            max_failures=settings.gateway_lockout_max_failures,
            window_s=settings.gateway_lockout_window_s,
            lock_s=settings.gateway_lockout_lock_s,
            base_delay_s=settings.gateway_lockout_base_delay_s,
            max_delay_s=settings.gateway_lockout_max_delay_s,
        ),
    )
    endpoint = TokenEndpoint(
        store,
        issuer,
        refresh_policy=RefreshPolicy(
            refresh_store,
            ttl_s=settings.gateway_refresh_token_ttl_s,
            family_max_s=settings.gateway_refresh_family_max_s,
        ),
        guard=guard,
        revocations=writer,
    )
    follower = RevocationFollower(
        redis_async, verifier.set_revoked, poll_s=settings.gateway_revocation_poll_s
    )
    return Identity(
        ring=ring,
        issuer=issuer,
        verifier=verifier,
        endpoint=endpoint,
        control=TokenControl(endpoint, verifier, writer),
        external=external,
        follower=follower,
        sync_redis=client,
        keys_poll_s=settings.gateway_keys_poll_s,
    )
