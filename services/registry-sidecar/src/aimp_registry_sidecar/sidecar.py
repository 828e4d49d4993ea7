"""The sidecar's parts, built from settings, and its stop sequence."""

from __future__ import annotations

import asyncio
import logging
import time

from aimp_core.auth import JwksVerifier
from aimp_core.registry_client import META_MODEL, META_REVISION, META_RUNTIME
from aimp_registry_sidecar import metrics
from aimp_registry_sidecar.admission import Gate
from aimp_registry_sidecar.callers import CallerCheck, TokenCache, Verifier
from aimp_registry_sidecar.eureka_adapter import EurekaRegistration, InstanceInfo
from aimp_registry_sidecar.registration import Registrar
from aimp_registry_sidecar.settings import SidecarSettings
from aimp_registry_sidecar.upstream import Upstream

log = logging.getLogger(__name__)


def instance_info(s: SidecarSettings) -> InstanceInfo:
    """What the registry is told about this pod, with the aimp.* metadata keys."""
    return InstanceInfo(
        service=s.sidecar_service,
        instance_id=s.instance_id,
        ip=s.sidecar_advertised_ip,
        port=s.sidecar_port,
        # Eureka leases count whole seconds; the heartbeat itself keeps the exact interval.
        renewal_interval_s=max(1, round(s.sidecar_renewal_interval_s)),
        lease_duration_s=s.sidecar_lease_duration_s,
        metadata={
            META_REVISION: s.sidecar_revision,
            META_RUNTIME: s.sidecar_runtime,
            META_MODEL: s.model_name,
        },
    )


class Sidecar:
    """Gate, caller check, upstream and registrar for one pod, plus the drain on stop."""

    def __init__(self, settings: SidecarSettings, *, verifier: Verifier | None = None) -> None:
        self.settings = s = settings
        self.service = s.sidecar_service
        self.gate = Gate(s.sidecar_concurrency_limit, s.sidecar_queue_size)
        if verifier is None and s.sidecar_verify_tokens:
            verifier = JwksVerifier(
                s.jwks_url, issuer=s.token_issuer or None, timeout_s=s.http_timeout_s
            )
        self.callers = CallerCheck(
            verifier,
            self.service,
            TokenCache(s.sidecar_token_cache_size),
            enabled=s.sidecar_verify_tokens,
        )
        self.upstream = Upstream(
            s.sidecar_upstream_url,
            timeout_s=s.sidecar_upstream_timeout_s,
            # Room beyond the call limit so readiness probes never wait behind busy calls
            # (a probe stuck in the pool would time out and mark a busy pod DOWN).
            pool_size=s.sidecar_concurrency_limit + 2,
            model=s.model_name,
        )
        self.registration = EurekaRegistration(
            s.registry_url, instance_info(s), timeout_s=s.http_timeout_s
        )
        self.registrar = Registrar(
            self.registration,
            probe=self.upstream.ready,
            renewal_interval_s=s.sidecar_renewal_interval_s,
            poll_interval_s=s.sidecar_ready_poll_interval_s,
            backoff_max_s=s.sidecar_registry_backoff_max_s,
        )
        self._stopping: asyncio.Task[None] | None = None
        labels = (self.service,)
        metrics.IN_FLIGHT.labels(*labels).set_function(lambda: self.gate.in_flight)
        metrics.QUEUED.labels(*labels).set_function(lambda: self.gate.queued)
        metrics.REGISTERED.labels(*labels).set_function(
            lambda: float(self.registrar.registered_status is not None)
        )

    async def start(self) -> None:
        await self.upstream.start()
        self.registration.start()
        self.registrar.start()
        log.info(
            "sidecar started",
            extra={
                "service": self.service,
                "upstream": self.upstream.base_url,
                "instance_id": self.settings.instance_id,
                "verify_tokens": self.settings.sidecar_verify_tokens,
            },
        )

    async def stop(self) -> None:
        """OUT_OF_SERVICE, grace, refuse new calls, drain, deregister (once; callers share it)."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        started = time.monotonic()
        await self.registrar.leave(before_cancel=self._drain)
        log.info("sidecar stopped", extra={"took_s": round(time.monotonic() - started, 3)})

    async def _drain(self) -> None:
        s = self.settings
        if s.sidecar_drain_grace_s > 0 and self.registrar.ever_ready:
            await asyncio.sleep(s.sidecar_drain_grace_s)
        in_flight = self.gate.in_flight + self.gate.queued
        drained = await self.gate.drain(s.sidecar_drain_timeout_s)
        log.info(
            "drained" if drained else "drain timed out; exiting with calls in flight",
            extra={"in_flight_at_start": in_flight, "left": self.gate.in_flight},
        )

    async def aclose(self) -> None:
        await self.upstream.aclose()
        await self.registration.aclose()
