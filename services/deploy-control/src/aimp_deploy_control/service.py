"""Deployment use-cases: validate, store, and keep the backend's pods in line with the store.

Writes to one deployment (create, scale, restart's start, delete) are serialised by a
lock of its own; a rolling restart then runs as a background task outside that lock,
and scaling refuses (409) while it runs so the two never fight over replicas.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from aimp_core.errors import AimpError, BadRequest, Conflict, NotFound
from aimp_deploy_control import portable, runtimes
from aimp_deploy_control.backend import PodBackend, PodInfo, PodSpec
from aimp_deploy_control.inventory import Demand, Inventory
from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.model_db import ModelVersion
from aimp_deploy_control.models import ModelRegistry
from aimp_deploy_control.plans import plan_rollout, scale_plan
from aimp_deploy_control.resources import ResourcesSpec
from aimp_deploy_control.revision_start import RevisionStarter
from aimp_deploy_control.revision_store import Revision
from aimp_deploy_control.revisions import RUNS_PODS
from aimp_deploy_control.rollout import Rollout, RolloutRunner, RolloutState
from aimp_deploy_control.schemas import (
    DeploymentCreate,
    DeploymentPublic,
    PodPublic,
    RevisionCreate,
    RevisionPublic,
    RolloutPublic,
    RuntimePublic,
    ScalePublic,
    WarmupPublic,
)
from aimp_deploy_control.settings import DeployControlSettings
from aimp_deploy_control.store import Deployment, DeploymentStore, NameTaken
from aimp_deploy_control.validation import (
    differences,
    validate_model_file,
    validate_name,
    validate_replicas,
)

log = logging.getLogger(__name__)


def pod_public(info: PodInfo) -> PodPublic:
    return PodPublic.model_validate(dataclasses.asdict(info))


def rollout_public(rollout: Rollout) -> RolloutPublic:
    return RolloutPublic.model_validate(dataclasses.asdict(rollout))


def runtimes_public(settings: DeployControlSettings) -> list[RuntimePublic]:
    """Every runtime, whether it can run here, and if not why and how to fix it."""
    out = []
    for name, spec in runtimes.RUNTIMES.items():
        reason = runtimes.unavailable_reason(settings, name)
        out.append(
            RuntimePublic(
                name=name,
                available=reason is None,
                frameworks=list(spec.frameworks),
                command=runtimes.command_of(settings, name),
                detail=reason,
            )
        )
    return out


def _missing(name: str) -> NotFound:
    return NotFound(f"no deployment named {name!r}; GET /v1/deployments lists them")


class Deployments:
    def __init__(
        self,
        store: DeploymentStore,
        backend: PodBackend,
        settings: DeployControlSettings,
        runner: RolloutRunner,
        models: ModelRegistry | None = None,
    ) -> None:
        self.store = store
        self.models = models
        self.backend = backend
        self.settings = settings
        self.max_replicas = settings.max_replicas
        self.runner = runner
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._rollouts: dict[str, Rollout] = {}
        self._tasks: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}

    # -- reading --------------------------------------------------------------------------

    def view(self, dep: Deployment) -> DeploymentPublic:
        pods = [pod_public(p) for p in self.backend.pods(dep.name)]
        rollout = self._rollouts.get(dep.name)
        fields = dataclasses.asdict(dep)
        fields["model_file"] = dep.model_file or None  # '' for a registered model version
        return DeploymentPublic(
            **fields,
            pods=pods,
            rollout=rollout_public(rollout) if rollout else None,
        )

    async def get(self, name: str) -> DeploymentPublic:
        return self.view(await self._require(name))

    async def list(self) -> list[DeploymentPublic]:
        return [self.view(d) for d in await asyncio.to_thread(self.store.list)]

    async def scale_of(self, name: str) -> ScalePublic:
        dep = await self._require(name)
        return ScalePublic(replicas=dep.replicas, ready=self._ready(name))

    # -- writing --------------------------------------------------------------------------

    async def create(self, req: DeploymentCreate) -> tuple[DeploymentPublic, bool]:
        """Store and start a deployment; (view, False) when an identical one exists."""
        name = validate_name(req.name)
        replicas = validate_replicas(req.replicas, self.max_replicas)
        version = None
        if req.model is not None:
            version = await self._version_of(req)
            framework, model_file = version.framework, ""
        else:
            assert req.model_file is not None  # DeploymentCreate requires one of the two
            framework = req.framework or runtimes.SKLEARN
            if framework == runtimes.PYTHON:
                raise BadRequest(
                    "a custom Python handler needs its schema: upload it with POST "
                    "/v1/models/{model}/versions and deploy it with 'model' instead of 'model_file'"
                )
            model_file = str(validate_model_file(req.model_file))
        runtimes.validate_runtime(req.runtime, framework)
        requested: dict[str, object] = {
            "model_file": model_file,
            "runtime": req.runtime,
            "framework": framework,
            "model": version.model if version else None,
            "model_version": version.version if version else None,
        }
        async with self._locks[name]:
            existing = await asyncio.to_thread(self.store.get, name)
            if existing is not None:
                diff = differences(existing.spec(), requested)
                if diff:
                    raise Conflict(
                        f"deployment {name!r} exists with other settings ({'; '.join(diff)}); "
                        f"DELETE /v1/deployments/{name} first to replace it"
                    )
                if not self._rolling(name):  # a rollout starts and stops replicas itself
                    await self._apply(existing, existing.replicas)
                return self.view(existing), False
            # A runtime that is missing or a model it cannot load is a 400 before anything
            # is stored.
            source = await self.models.local_file(version) if version and self.models else None
            served = await self._served_file(name, str(source or model_file), req.runtime)
            model = (version.model, version.version) if version else None
            try:
                dep = await asyncio.to_thread(
                    self.store.add, name, model_file, framework, req.runtime, replicas, model
                )
            except NameTaken:
                raise Conflict(f"deployment {name!r} was just created by another call") from None
            try:
                await self._apply(dep, replicas, served)
            except AimpError:
                await self._stop_all(name)
                await asyncio.to_thread(self.store.delete, name)
                raise
        log.info(
            "deployment created",
            extra={"deployment": name, "runtime": req.runtime, "replicas": replicas},
        )
        return self.view(dep), True

    async def scale(self, name: str, replicas: int) -> ScalePublic:
        """Run exactly ``replicas`` pods: start the missing ones, stop the highest first."""
        replicas = validate_replicas(replicas, self.max_replicas, minimum=0)
        async with self._locks[name]:
            dep = await self._require(name)
            if self._rolling(name):
                raise Conflict(self._busy(name, "scale"))
            served = None
            if scale_plan([p.replica for p in self.backend.pods(name)], replicas).start:
                # A runtime gone missing is a 400 before anything changes.
                served = await self._served_file(dep.name, await self._source(dep), dep.runtime)
            # Stored first: a deploy-control restarted meanwhile restores the new count.
            await asyncio.to_thread(self.store.set_replicas, name, replicas)
            await self._apply(dep, replicas, served)
        log.info("deployment scaled", extra={"deployment": name, "replicas": replicas})
        return ScalePublic(replicas=replicas, ready=self._ready(name))

    async def restart(self, name: str) -> RolloutPublic:
        """Begin a rolling restart in the background; its progress shows in the view."""
        async with self._locks[name]:
            dep = await self._require(name)
            if self._rolling(name):
                raise Conflict(self._busy(name, "restart"))
            # Re-exported if the model file changed; a failure here stops nothing.
            served = await self._served_file(dep.name, await self._source(dep), dep.runtime)
            states = {p.replica: p.state for p in self.backend.pods(name)}
            ready = {r: states.get(r) == PodState.RUNNING for r in range(dep.replicas)}
            steps = plan_rollout(ready, surge_allowed=dep.replicas < self.max_replicas)
            progress = Rollout(total=len(ready))
            cancel = asyncio.Event()
            task = asyncio.create_task(
                self.runner.run(name, steps, self._spec_of(dep, served), progress, cancel),
                name=f"rollout-{name}",
            )
            self._rollouts[name] = progress
            self._tasks[name] = (task, cancel)
            task.add_done_callback(lambda done: self._forget(name, done))
        return rollout_public(progress)

    async def delete(self, name: str) -> None:
        async with self._locks[name]:
            await self._require(name)
            await self._cancel_rollout(name)
            await self._stop_all(name)
            await asyncio.to_thread(self.store.delete, name)
            self._rollouts.pop(name, None)
            shutil.rmtree(self.settings.deployments_dir / name, ignore_errors=True)
        log.info("deployment deleted", extra={"deployment": name})

    async def restore(self) -> None:
        """Start the pods of every stored deployment (after deploy-control starts)."""
        for dep in await asyncio.to_thread(self.store.list):
            try:
                await self._apply(dep, dep.replicas)
            except AimpError as exc:
                log.error(
                    "cannot restore deployment", extra={"deployment": dep.name, "error": exc.detail}
                )

    async def close(self) -> None:
        """Stop running rollouts (at shutdown, before the backend stops every pod)."""
        await asyncio.gather(*(self._cancel_rollout(n) for n in list(self._tasks)))

    # -- helpers --------------------------------------------------------------------------

    async def _require(self, name: str) -> Deployment:
        dep = await asyncio.to_thread(self.store.get, name)
        if dep is None:
            raise _missing(name)
        return dep

    def _ready(self, name: str) -> int:
        return sum(p.state == PodState.RUNNING for p in self.backend.pods(name))

    def _rolling(self, name: str) -> bool:
        progress = self._rollouts.get(name)
        return progress is not None and progress.state == RolloutState.RUNNING

    def _busy(self, name: str, what: str) -> str:
        p = self._rollouts[name]
        return (
            f"cannot {what} {name!r}: a rolling restart is running (replaced {p.replaced} of "
            f"{p.total}, started {p.started_at.isoformat()}); GET /v1/deployments/{name} shows "
            "its progress, try again when its state is no longer 'running'"
        )

    async def _version_of(self, req: DeploymentCreate) -> ModelVersion:
        if self.models is None:
            raise BadRequest("this deploy-control has no model registry; give 'model_file'")
        assert req.model is not None
        if req.framework is not None:
            raise BadRequest(
                f"'framework' goes with 'model_file' only: model {req.model!r} was uploaded "
                "with its framework; leave 'framework' out"
            )
        return await self.models.resolve(req.model, req.version)

    async def _source(self, dep: Deployment) -> str:
        """The file a deployment serves on this host: its model_file, or its registered
        version's copy in the local model cache (fetched from the store if absent)."""
        if dep.model is None or dep.model_version is None:
            return dep.model_file
        if self.models is None:
            raise BadRequest(
                f"deployment {dep.name!r} serves a registered model, and this "
                "deploy-control has no model registry"
            )
        version = await self.models.resolve(dep.model, dep.model_version)
        return str(await self.models.local_file(version))

    async def _served_file(self, name: str, model_file: str, runtime: str) -> str:
        """What the runtime's server loads: the user's file, or its export (made if stale)."""
        reason = runtimes.unavailable_reason(self.settings, runtime)
        if reason is not None:
            raise BadRequest(reason)
        if not runtimes.RUNTIMES[runtime].needs_export:
            return model_file
        out = self.settings.deployments_dir / name / portable.PORTABLE_NAME
        await portable.export(
            self.settings.deploy_control_export_command,
            Path(model_file),
            out,
            runtime=runtime,
            timeout_s=self.settings.deploy_control_export_timeout_s,
        )
        return str(out)

    def _spec_of(self, dep: Deployment, served: str) -> Callable[[int], PodSpec]:
        def spec(replica: int) -> PodSpec:
            return PodSpec(dep.name, replica, served, dep.framework, dep.runtime)

        return spec

    async def _apply(self, dep: Deployment, replicas: int, served: str | None = None) -> None:
        plan = scale_plan([p.replica for p in self.backend.pods(dep.name)], replicas)
        if plan.start:
            if served is None:
                served = await self._served_file(dep.name, await self._source(dep), dep.runtime)
            spec = self._spec_of(dep, served)
            for replica in plan.start:
                await self.backend.start_pod(spec(replica))
        for replica in plan.stop:  # one at a time: each sidecar drains before the next
            await self.backend.stop_pod(f"{dep.name}-{replica}")

    async def _stop_all(self, name: str) -> None:
        await self.backend.remove(name)  # on Kubernetes also deletes the Deployment and Service

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name, (None,))[0] is task:
            del self._tasks[name]

    async def _cancel_rollout(self, name: str) -> None:
        entry = self._tasks.pop(name, None)
        if entry is not None:
            task, cancel = entry
            cancel.set()  # the runner stops between steps, never halfway through a stop
            await task
