"""Observes a starting local replica and records its cold-start marks (coldstart.py).

The backend records ``requested`` and ``process_started`` itself when it spawns the
server; this watcher then probes, every ``cold_start_probe_interval_s``:

- the inference server on its upstream URL: ``/v2/health/ready`` and the model's
  ``/v2/models/{name}/ready`` (what the sidecar checks; Triton, the C++ and the Java
  pods all answer them) -> ``model_loaded``;
- the registry, as the rolling restart does (rollout.UpProbe): the sidecar's instance
  listed UP -> ``registered``.

A start that is not registered within ``cold_start_timeout_s`` is recorded as
abandoned; the supervisor goes on managing the pod either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import httpx

from aimp_deploy_control.backend import PodInfo
from aimp_deploy_control.coldstart import ColdStartMarks, Mark, abandon, phases, record
from aimp_deploy_control.observe_settings import PodObserveSettings
from aimp_deploy_control.plans import RegistryView
from aimp_deploy_control.rollout import UpProbe

log = logging.getLogger(__name__)


class Watched(Protocol):
    """A local pod as the watcher sees it (local_backend.LocalPod)."""

    cold: ColdStartMarks | None

    def info(self) -> PodInfo: ...


class ColdStartWatcher:
    def __init__(
        self,
        registry_url: str,
        observe: PodObserveSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.observe = observe
        self.clock = clock
        self._http = httpx.AsyncClient(timeout=observe.cold_start_probe_timeout_s)
        self._registry = UpProbe(registry_url, timeout_s=observe.cold_start_probe_timeout_s)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._registry.aclose()

    async def model_loaded(self, pod: PodInfo) -> bool:
        """The inference server answers ready, and so does its model."""
        paths = ("/v2/health/ready", f"/v2/models/{pod.deployment}/ready")
        try:
            for path in paths:
                if (await self._http.get(pod.upstream_url + path)).status_code != 200:
                    return False
        except httpx.HTTPError:
            return False
        return True

    async def registered(self, pod: PodInfo) -> bool:
        """The registry lists the pod's sidecar UP."""
        return await self._registry.registry_view(pod) is RegistryView.UP

    async def run(self, pod: Watched) -> None:
        """Probe until ``pod.cold`` is registered, ended, or timed out (cancel to stop)."""
        deadline = self.clock() + self.observe.cold_start_timeout_s
        while pod.cold is not None and pod.cold.awaited is not None:
            info = pod.info()
            awaited = pod.cold.awaited
            if awaited is Mark.MODEL_LOADED:
                passed = await self.model_loaded(info)
            elif awaited is Mark.REGISTERED:
                passed = await self.registered(info)
            else:
                return  # the backend records the marks before these itself
            if pod.cold is None or pod.cold.awaited is not awaited:
                return  # the start this watcher followed was replaced or ended meanwhile
            now = self.clock()
            if passed:
                pod.cold = record(pod.cold, awaited, now)
                continue
            if now >= deadline:
                pod.cold = abandon(
                    pod.cold,
                    f"not {awaited} within {self.observe.cold_start_timeout_s:g} s "
                    "(AIMP_DEPLOY_CONTROL_COLD_START_TIMEOUT_S)",
                )
                break
            await asyncio.sleep(self.observe.cold_start_probe_interval_s)
        if pod.cold is not None:
            result = phases(pod.cold)
            log.info(
                "cold start",
                extra={
                    "pod": pod.info().pod_id,
                    "state": result.state,
                    "process_start_ms": result.process_start_ms,
                    "model_load_ms": result.model_load_ms,
                    "registration_ms": result.registration_ms,
                    "total_ms": result.total_ms,
                },
            )
