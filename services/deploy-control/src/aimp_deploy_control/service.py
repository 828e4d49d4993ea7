"""Deployment use-cases: validate, store, and keep the backend's pods in line with the store.

A deployment has revisions (r1 first, with all its traffic; releases.py adds more and
moves traffic between them); each revision runs its own pods. Scaling and rolling
restarts act on the primary revision (the one with the most traffic).

Writes to one deployment (create, scale, restart's start, delete, and releases.py's
changes) are serialised by a lock of its own; a rolling restart then runs as a
background task outside that lock, and scaling refuses (409) while it runs so the two
never fight over replicas.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from collections import defaultdict

from aimp_core.errors import AimpError, Conflict, NotFound
from aimp_deploy_control.backend import PodBackend
from aimp_deploy_control.inventory import Inventory
from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.models import ModelRegistry
from aimp_deploy_control.plans import plan_rollout, scale_plan
from aimp_deploy_control.revision_pods import RevisionPods
from aimp_deploy_control.revision_spec import check_bounds, check_scale, serving_differences
from aimp_deploy_control.revision_start import RevisionStarter
from aimp_deploy_control.revision_store import Revision
from aimp_deploy_control.revisions import RUNS_PODS, TAKES_TRAFFIC, RevisionState
from aimp_deploy_control.rollout import Rollout, RolloutRunner
from aimp_deploy_control.rollout_tasks import RolloutTasks
from aimp_deploy_control.schemas import (
    DeploymentCreate,
    DeploymentPublic,
    RolloutPublic,
    ScalePublic,
)
from aimp_deploy_control.settings import DeployControlSettings
from aimp_deploy_control.store import Deployment, DeploymentStore, NameTaken
from aimp_deploy_control.traffic import GatewayTraffic
from aimp_deploy_control.validation import (
    differences,
    validate_name,
    validate_replicas,
)
from aimp_deploy_control.views import pod_public, revision_public, rollout_public

log = logging.getLogger(__name__)

#: (``list`` is also a method name below.)
Revisions = list[Revision]


def _missing(name: str) -> NotFound:
    return NotFound(f"no deployment named {name!r}; GET /v1/deployments lists them")


def primary(revisions: list[Revision]) -> Revision:
    """The revision with the most traffic (the newest among equals)."""
    return max(revisions, key=lambda r: (r.traffic, r.number))


def find(revisions: list[Revision], revision: str, name: str) -> Revision:
    """The revision named ``revision``; 404 naming the ones there are."""
    rev = next((r for r in revisions if r.name == revision), None)
    if rev is None:
        known = ", ".join(r.name for r in revisions)
        raise NotFound(f"deployment {name!r} has no revision {revision!r}; it has {known}")
    return rev


class Deployments:
    def __init__(
        self,
        store: DeploymentStore,
        backend: PodBackend,
        settings: DeployControlSettings,
        runner: RolloutRunner,
        models: ModelRegistry | None = None,
        *,
        starter: RevisionStarter | None = None,
        inventory: Inventory | None = None,
        traffic: GatewayTraffic | None = None,
    ) -> None:
        self.pods = RevisionPods(store, backend, settings, models, inventory)
        self.store = store
        self.models = models
        self.backend = backend
        self.settings = settings
        self.max_replicas = settings.max_replicas
        self.runner = runner
        self.starter = starter
        self.inventory = inventory
        self.traffic = traffic
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.rollouts = RolloutTasks()

    # -- reading --------------------------------------------------------------------------

    def view(self, dep: Deployment, revisions: Revisions) -> DeploymentPublic:
        pods = self.backend.pods(dep.name)
        rollout = self.rollouts.progress(dep.name)
        fields = dataclasses.asdict(dep)
        fields["model_file"] = dep.model_file or None  # '' for a registered model version
        starter = self.starter
        return DeploymentPublic(
            **fields,
            pods=[pod_public(p) for p in pods],
            rollout=rollout_public(rollout) if rollout else None,
            revisions=[
                revision_public(r, pods, starter.record(dep.name, r.name) if starter else None)
                for r in revisions
            ],
        )

    async def get(self, name: str) -> DeploymentPublic:
        dep = await self.require(name)
        return self.view(dep, await self.revisions(name))

    async def list(self) -> list[DeploymentPublic]:
        deps = await asyncio.to_thread(self.store.list)
        return [self.view(d, await self.revisions(d.name)) for d in deps]

    async def revisions(self, name: str) -> Revisions:
        return await asyncio.to_thread(self.store.revisions, name)

    async def scale_of(self, name: str, revision: str | None = None) -> ScalePublic:
        await self.require(name)
        revisions = await self.revisions(name)
        rev = primary(revisions) if revision is None else find(revisions, revision, name)
        return ScalePublic(replicas=rev.replicas, ready=self._ready(name, rev.name))

    # -- writing --------------------------------------------------------------------------

    async def create(self, req: DeploymentCreate) -> tuple[DeploymentPublic, bool]:
        """Store and start a deployment; (view, False) when an identical one exists."""
        name = validate_name(req.name)
        replicas = validate_replicas(req.initial, self.max_replicas)
        serving = req.serving()
        check_bounds(serving, self.max_replicas)
        src = await self.pods.source_of(req)
        requested: dict[str, object] = {
            "model_file": src.model_file,
            "runtime": req.runtime,
            "framework": src.framework,
            "model": src.version.model if src.version else None,
            "model_version": src.version.version if src.version else None,
        }
        async with self.locks[name]:
            existing = await asyncio.to_thread(self.store.get, name)
            if existing is not None:
                serving_now = primary(await self.revisions(name)).serving
                diff = differences(existing.spec(), requested)
                diff += serving_differences(serving_now, serving)
                if diff:
                    raise Conflict(
                        f"deployment {name!r} exists with other settings ({'; '.join(diff)}); "
                        f"DELETE /v1/deployments/{name} first to replace it, or add a revision "
                        f"with POST /v1/deployments/{name}/revisions"
                    )
                if not self.rollouts.rolling(name):  # a rollout starts and stops replicas itself
                    for rev in await self.revisions(name):
                        if rev.state in RUNS_PODS:
                            await self.pods.apply_revision(name, rev, rev.replicas)
                return self.view(existing, await self.revisions(name)), False
            # A runtime that is missing or a model it cannot load is a 400 before anything
            # is stored; so is a GPU request that cannot fit.
            served = await self.pods.served_file(
                name, "r1", await self.pods.local(src), req.runtime
            )
            resources = req.resources.model_dump() if req.resources else None
            await self.pods.check_gpus(name, "r1", resources, replicas)
            try:
                dep = await asyncio.to_thread(
                    self.store.add,
                    name,
                    src.model_file,
                    src.framework,
                    req.runtime,
                    replicas,
                    src.model,
                    resources,
                    serving,
                )
            except NameTaken:
                raise Conflict(f"deployment {name!r} was just created by another call") from None
            first = (await self.revisions(name))[0]
            try:
                await self.pods.apply_revision(name, first, replicas, served)
            except AimpError:
                await self._stop_all(name)
                await asyncio.to_thread(self.store.delete, name)
                raise
            if self.starter is not None:
                self.starter.begin(name, first.name)
        log.info(
            "deployment created",
            extra={"deployment": name, "runtime": req.runtime, "replicas": replicas},
        )
        return self.view(dep, await self.revisions(name)), True

    async def scale(self, name: str, replicas: int, revision: str | None = None) -> ScalePublic:
        """Run exactly ``replicas`` pods of ``revision`` (the primary one when None): start
        the missing ones, stop the highest first; within the revision's scale bounds."""
        replicas = validate_replicas(replicas, self.max_replicas, minimum=0)
        async with self.locks[name]:
            await self.require(name)
            if (busy := self.rollouts.busy_error(name, "scale")) is not None:
                raise busy
            revisions = await self.revisions(name)
            rev = primary(revisions) if revision is None else find(revisions, revision, name)
            if rev.state is RevisionState.SCALED_DOWN:
                raise Conflict(
                    f"revision {rev.name} of {name!r} is {rev.state} and runs no pods; bring it "
                    f"back with POST /v1/deployments/{name}/rollback or promote, not by scaling"
                )
            check_scale(replicas, rev.serving, rev.name, self.max_replicas)
            served = None
            if scale_plan([p.replica for p in self.pods.pods_of(name, rev.name)], replicas).start:
                # A runtime gone missing or GPUs that do not fit are a 400 before anything
                # changes.
                served = await self.pods.served_for(name, rev)
                await self.pods.check_gpus(name, rev.name, rev.resources, replicas)
            # Stored first: a deploy-control restarted meanwhile restores the new count.
            await asyncio.to_thread(
                self.store.change_revisions, name, replicas={rev.name: replicas}
            )
            await self.pods.apply_revision(name, rev, replicas, served)
        log.info(
            "deployment scaled",
            extra={"deployment": name, "revision": rev.name, "replicas": replicas},
        )
        return ScalePublic(replicas=replicas, ready=self._ready(name, rev.name))

    async def restart(self, name: str) -> RolloutPublic:
        """Begin a rolling restart of the primary revision in the background; its progress
        shows in the view."""
        async with self.locks[name]:
            await self.require(name)
            if (busy := self.rollouts.busy_error(name, "restart")) is not None:
                raise busy
            rev = primary(await self.revisions(name))
            # Re-exported if the model file changed; a failure here stops nothing.
            served = await self.pods.served_for(name, rev)
            states = {p.replica: p.state for p in self.pods.pods_of(name, rev.name)}
            ready = {r: states.get(r) == PodState.RUNNING for r in range(rev.replicas)}
            steps = plan_rollout(ready, surge_allowed=rev.replicas < self.max_replicas)
            progress = Rollout(total=len(ready))
            cancel = asyncio.Event()
            run = self.runner.run(
                name, steps, self.pods.spec_of(name, rev, served), progress, cancel
            )
            self.rollouts.begin(name, run, progress, cancel)
        return rollout_public(progress)

    async def delete(self, name: str) -> None:
        async with self.locks[name]:
            await self.require(name)
            split_written = len(await self.revisions(name)) > 1
            await self.rollouts.cancel(name)
            if self.starter is not None:
                await self.starter.cancel(name)
            await self._stop_all(name)
            await asyncio.to_thread(self.store.delete, name)
            self.rollouts.forget(name)
            shutil.rmtree(self.settings.deployments_dir / name, ignore_errors=True)
            if split_written and self.traffic is not None:
                try:  # a later deployment of this name starts without the old split
                    await self.traffic.set_split(name, {})
                except AimpError as exc:
                    log.warning(
                        "cannot clear the traffic split at the gateway",
                        extra={"deployment": name, "error": exc.detail},
                    )
        log.info("deployment deleted", extra={"deployment": name})

    async def restore(self) -> None:
        """Start the pods of every stored revision that runs any (after deploy-control
        starts); a revision that was still starting is brought into service again."""
        for dep in await asyncio.to_thread(self.store.list):
            for rev in await self.revisions(dep.name):
                if rev.state not in RUNS_PODS:
                    continue
                try:
                    await self.pods.apply_revision(dep.name, rev, rev.replicas)
                except AimpError as exc:
                    log.error(
                        "cannot restore a revision",
                        extra={"deployment": dep.name, "revision": rev.name, "error": exc.detail},
                    )
                    continue
                if self.starter is not None and rev.state not in TAKES_TRAFFIC:
                    self.starter.begin(dep.name, rev.name)

    async def close(self) -> None:
        """Stop running rollouts and starts (at shutdown, before the backend stops pods)."""
        await self.rollouts.close()
        if self.starter is not None:
            await self.starter.close()

    # -- shared with releases.py ------------------------------------------------------------

    async def require(self, name: str) -> Deployment:
        dep = await asyncio.to_thread(self.store.get, name)
        if dep is None:
            raise _missing(name)
        return dep

    def busy_error(self, name: str, what: str) -> Conflict | None:
        return self.rollouts.busy_error(name, what)

    # -- helpers --------------------------------------------------------------------------

    def _ready(self, name: str, revision: str) -> int:
        return sum(p.state == PodState.RUNNING for p in self.pods.pods_of(name, revision))

    async def _stop_all(self, name: str) -> None:
        await self.backend.remove(name)  # on Kubernetes also deletes the Deployment and Service
