"""Runs a rolling restart's steps (plans.plan_rollout) against a backend, with progress.

A rollout runs as a background task; its :class:`Rollout` record is what
``GET /v1/deployments/{name}`` shows while it runs and after it ended. It stops at
the first replacement that does not come UP in time (the replicas not yet replaced
keep serving) and when cancelled (the deployment is being deleted).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import httpx

from aimp_core.registry_client import EurekaClient, app_name
from aimp_deploy_control.backend import PodBackend, PodInfo, PodSpec
from aimp_deploy_control.plans import (
    Action,
    RegistryView,
    Step,
    registry_view,
    replacement_up,
)

log = logging.getLogger(__name__)

#: A sidecar's /readyz is local and answers in about a millisecond.
READYZ_TIMEOUT_S = 1.0


class RolloutState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Rollout:
    """Progress of one rolling restart (mutated by its runner only)."""

    total: int
    state: RolloutState = RolloutState.RUNNING
    replaced: int = 0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    #: The step under way, for people watching ("waiting for iris-1 to be UP").
    current: str | None = None
    error: str | None = None

    def end(self, state: RolloutState, error: str | None = None) -> None:
        self.state, self.error, self.current = state, error, None
        self.finished_at = datetime.now(UTC)


class Cancelled(Exception):
    """The rollout was asked to stop (its deployment is being deleted)."""


class NotUp(Exception):
    """A replacement did not come UP in time."""


class Prober(Protocol):
    async def is_up(self, pod: PodInfo) -> bool:
        """True once ``pod`` may take calls (see plans.replacement_up)."""


class UpProbe:
    """Reads what :func:`plans.replacement_up` decides on: the sidecar's /readyz and the
    registry's status of the instance at the sidecar's address."""

    def __init__(self, registry_url: str, *, timeout_s: float) -> None:
        self._registry = EurekaClient(registry_url, timeout_s=timeout_s)
        self._http = httpx.AsyncClient(timeout=READYZ_TIMEOUT_S)

    async def aclose(self) -> None:
        await self._registry.aclose()
        await self._http.aclose()

    async def is_up(self, pod: PodInfo) -> bool:
        try:
            ready = (await self._http.get(f"{pod.url}/readyz")).status_code == 200
        except httpx.HTTPError:
            ready = False
        if not ready:
            return False
        return replacement_up(sidecar_ready=True, registry=await self.registry_view(pod))

    async def registry_view(self, pod: PodInfo) -> RegistryView:
        try:
            instances = await self._registry.applications()
        except (httpx.HTTPError, ValueError):
            return registry_view(None, reachable=False)
        status = next(
            (
                i.status
                for i in instances
                if i.app == app_name(pod.deployment) and i.base_url == pod.url
            ),
            None,
        )
        return registry_view(status, reachable=True)


class RolloutRunner:
    def __init__(
        self,
        backend: PodBackend,
        probe: Prober,
        *,
        ready_timeout_s: float,
        poll_interval_s: float,
    ) -> None:
        self.backend = backend
        self.probe = probe
        self.ready_timeout_s = ready_timeout_s
        self.poll_interval_s = poll_interval_s

    async def run(
        self,
        deployment: str,
        steps: list[Step],
        spec_of: Callable[[int], PodSpec],
        progress: Rollout,
        cancel: asyncio.Event,
    ) -> None:
        """Execute ``steps`` in order, recording progress; never raises."""
        log.info("rollout started", extra={"deployment": deployment, "total": progress.total})
        try:
            for step in steps:
                if cancel.is_set():
                    raise Cancelled
                await self._step(deployment, step, spec_of, progress, cancel)
        except Cancelled:
            progress.end(RolloutState.CANCELLED, "cancelled: the deployment is being deleted")
        except NotUp as exc:
            progress.end(RolloutState.FAILED, str(exc))
        except Exception as exc:  # a backend fault: recorded, never lost in a task
            log.exception("rollout failed", extra={"deployment": deployment})
            progress.end(RolloutState.FAILED, f"{type(exc).__name__}: {exc}")
        else:
            progress.end(RolloutState.SUCCEEDED)
        log.info(
            "rollout ended",
            extra={
                "deployment": deployment,
                "state": progress.state,
                "replaced": progress.replaced,
                "error": progress.error,
            },
        )

    async def _step(
        self,
        deployment: str,
        step: Step,
        spec_of: Callable[[int], PodSpec],
        progress: Rollout,
        cancel: asyncio.Event,
    ) -> None:
        spec = spec_of(step.replica)
        pod_id = self._pod_id(spec)
        if step.action is Action.STOP:
            progress.current = f"stopping {pod_id} (draining its sidecar first)"
            await self.backend.stop_pod(pod_id)
        elif step.action is Action.START:
            progress.current = f"starting {pod_id}"
            await self.backend.start_pod(spec)
        else:
            progress.current = f"waiting for {pod_id} to be UP"
            await self._wait_up(spec, cancel)
            if step.completes_replacement:
                progress.replaced += 1
        log.info("rollout step done", extra={"pod": pod_id, "action": step.action})

    def _find(self, spec: PodSpec) -> PodInfo | None:
        """The backend's pod for ``spec`` (its id may differ from spec.pod_id: a backend
        names its pods its own way)."""
        return next(
            (
                p
                for p in self.backend.pods(spec.deployment)
                if p.replica == spec.replica and p.revision == spec.revision
            ),
            None,
        )

    def _pod_id(self, spec: PodSpec) -> str:
        pod = self._find(spec)
        return pod.pod_id if pod is not None else spec.pod_id

    async def _wait_up(self, spec: PodSpec, cancel: asyncio.Event) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        pod: PodInfo | None = None
        pod_id = spec.pod_id
        while time.monotonic() < deadline:
            if cancel.is_set():
                raise Cancelled
            pod = self._find(spec)
            if pod is None:
                raise NotUp(f"{pod_id} disappeared while the rollout waited for it")
            pod_id = pod.pod_id
            if await self.probe.is_up(pod):
                return
            await asyncio.sleep(self.poll_interval_s)
        last = f" (last error: {pod.last_error})" if pod is not None and pod.last_error else ""
        raise NotUp(
            f"{pod_id} was not UP within {self.ready_timeout_s:g} s{last}; the replicas not yet "
            "replaced keep serving. Fix the cause and restart again "
            "(AIMP_DEPLOY_CONTROL_ROLLOUT_READY_TIMEOUT_S sets the wait)"
        )
