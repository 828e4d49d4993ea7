"""Brings a revision's new pods into service: wait until every pod is UP, warm each up,
then mark the revision READY (or SERVING when it already has traffic).

Runs as one background task per revision; its progress (:class:`WarmupProgress`) and
failure are what the revision's view shows. A rollback awaits the task instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aimp_deploy_control.backend import PodBackend, PodInfo
from aimp_deploy_control.models import ModelRegistry
from aimp_deploy_control.revision_settings import RevisionSettings
from aimp_deploy_control.revision_store import Revision
from aimp_deploy_control.revisions import RevisionState, transition
from aimp_deploy_control.rollout import Prober
from aimp_deploy_control.store import DeploymentStore
from aimp_deploy_control.warmup import Warmer, WarmupFailed, WarmupProgress

log = logging.getLogger(__name__)


@dataclass
class StartRecord:
    progress: WarmupProgress = field(default_factory=WarmupProgress)
    error: str | None = None
    task: asyncio.Task[None] | None = None


class RevisionStarter:
    def __init__(
        self,
        store: DeploymentStore,
        backend: PodBackend,
        probe: Prober,
        warmer: Warmer,
        settings: RevisionSettings,
        models: ModelRegistry | None = None,
        *,
        poll_interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.backend = backend
        self.probe = probe
        self.warmer = warmer
        self.settings = settings
        self.models = models
        self.poll_interval_s = poll_interval_s
        self._clock = clock
        self._records: dict[tuple[str, str], StartRecord] = {}

    def record(self, deployment: str, revision: str) -> StartRecord | None:
        return self._records.get((deployment, revision))

    def begin(self, deployment: str, revision: str) -> None:
        """Start bringing the revision's pods into service in the background."""
        key = (deployment, revision)
        old = self._records.get(key)
        if old is not None and old.task is not None:
            old.task.cancel()
        rec = StartRecord()
        rec.task = asyncio.create_task(
            self._run(deployment, revision, rec), name=f"start-{deployment}-{revision}"
        )
        self._records[key] = rec

    async def wait(self, deployment: str, revision: str) -> StartRecord:
        """Wait for the revision's start to end (its record says how it went)."""
        rec = self._records[(deployment, revision)]
        if rec.task is not None:
            await asyncio.gather(rec.task, return_exceptions=True)
        return rec

    async def cancel(self, deployment: str) -> None:
        """Stop the starts of a deployment's revisions (it is being deleted)."""
        for key in [k for k in self._records if k[0] == deployment]:
            await self.cancel_one(*key)
            self._records.pop(key, None)

    async def cancel_one(self, deployment: str, revision: str) -> None:
        """Stop a revision's start (its pods are being stopped); its record stays."""
        rec = self._records.get((deployment, revision))
        if rec is not None and rec.task is not None and not rec.task.done():
            rec.task.cancel()
            await asyncio.gather(rec.task, return_exceptions=True)

    async def close(self) -> None:
        for deployment in {k[0] for k in self._records}:
            await self.cancel(deployment)
        await self.warmer.aclose()

    # -- the task -----------------------------------------------------------------------------

    async def _run(self, deployment: str, revision: str, rec: StartRecord) -> None:
        deadline = self._clock() + self.settings.warmup_timeout_s
        try:
            rev = await self._revision(deployment, revision)
            pods = await self._all_up(deployment, rev, deadline)
            await self._move(deployment, revision, RevisionState.WARMING)
            inputs = await self._inputs(rev)
            await self.warmer.warm(pods, deployment, inputs, rec.progress, deadline)
            rev = await self._revision(deployment, revision)
            done = RevisionState.SERVING if rev.traffic > 0 else RevisionState.READY
            await self._move(deployment, revision, done)
            log.info("revision ready", extra={"deployment": deployment, "revision": revision})
        except (TimeoutError, WarmupFailed) as exc:
            rec.error = str(exc)
            await self._fail(deployment, revision)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a backend or store fault: recorded, never lost in a task
            log.exception("revision start failed", extra={"deployment": deployment})
            rec.error = f"{type(exc).__name__}: {exc}"
            await self._fail(deployment, revision)

    async def _revision(self, deployment: str, revision: str) -> Revision:
        revs = await asyncio.to_thread(self.store.revisions, deployment)
        rev = next((r for r in revs if r.name == revision), None)
        if rev is None:
            raise LookupError(f"revision {revision} of {deployment!r} is gone")
        return rev

    async def _move(self, deployment: str, revision: str, target: RevisionState) -> None:
        current = (await self._revision(deployment, revision)).state
        states = {revision: transition(revision, current, target)}
        await asyncio.to_thread(self.store.change_revisions, deployment, states=states)

    async def _fail(self, deployment: str, revision: str) -> None:
        try:
            await self._move(deployment, revision, RevisionState.FAILED)
        except Exception:
            log.exception("cannot record a failed revision", extra={"deployment": deployment})

    async def _all_up(self, deployment: str, rev: Revision, deadline: float) -> list[PodInfo]:
        while True:
            pods = [p for p in self.backend.pods(deployment) if p.revision == rev.name]
            pods = [p for p in pods if p.replica < rev.replicas]
            if len(pods) >= rev.replicas and all(
                [await self.probe.is_up(p) for p in pods]  # every pod probed each round
            ):
                return pods
            if self._clock() >= deadline:
                errors = "; ".join(f"{p.pod_id}: {p.last_error}" for p in pods if p.last_error)
                raise TimeoutError(
                    f"revision {rev.name}'s pods were not all UP within "
                    f"{self.settings.warmup_timeout_s:g} s ({errors or 'no error reported'}); "
                    "see GET /v1/pods/{pod_id}/logs (AIMP_DEPLOY_CONTROL_WARMUP_TIMEOUT_S "
                    "sets the wait)"
                )
            await asyncio.sleep(self.poll_interval_s)

    async def _inputs(self, rev: Revision) -> list[dict[str, Any]] | None:
        """The registered version's declared inputs; None: ask the server itself."""
        if self.models is None or rev.model is None or rev.model_version is None:
            return None
        version = await self.models.resolve(rev.model, rev.model_version)
        return [t.model_dump() for t in version.schema.inputs]
