"""Deployment use-cases: validate, store, and keep the backend's pods in line with the store."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from aimp_core.errors import AimpError, Conflict, NotFound
from aimp_deploy_control.backend import PodBackend, PodInfo, PodSpec
from aimp_deploy_control.schemas import DeploymentCreate, DeploymentPublic, PodPublic
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


class Deployments:
    def __init__(self, store: DeploymentStore, backend: PodBackend, *, max_replicas: int) -> None:
        self.store = store
        self.backend = backend
        self.max_replicas = max_replicas
        # One writer at a time: a create and a delete of the same name never interleave.
        self._lock = asyncio.Lock()

    def view(self, dep: Deployment) -> DeploymentPublic:
        pods = [pod_public(p) for p in self.backend.pods(dep.name)]
        return DeploymentPublic(**dataclasses.asdict(dep), pods=pods)

    async def create(self, req: DeploymentCreate) -> tuple[DeploymentPublic, bool]:
        """Store and start a deployment; (view, False) when an identical one exists."""
        name = validate_name(req.name)
        replicas = validate_replicas(req.replicas, self.max_replicas)
        model_file = str(validate_model_file(req.model_file))
        async with self._lock:
            existing = await asyncio.to_thread(self.store.get, name)
            if existing is not None:
                diff = differences(
                    existing.spec(),
                    {"model_file": model_file, "framework": req.framework, "replicas": replicas},
                )
                if diff:
                    raise Conflict(
                        f"deployment {name!r} exists with other settings ({'; '.join(diff)}); "
                        f"DELETE /v1/deployments/{name} first to replace it"
                    )
                await self._start_pods(existing)
                return self.view(existing), False
            try:
                dep = await asyncio.to_thread(
                    self.store.add, name, model_file, req.framework, replicas
                )
            except NameTaken:
                raise Conflict(f"deployment {name!r} was just created by another call") from None
            try:
                await self._start_pods(dep)
            except AimpError:
                await self._stop_pods(name)
                await asyncio.to_thread(self.store.delete, name)
                raise
            log.info("deployment created", extra={"deployment": name, "replicas": replicas})
            return self.view(dep), True

    async def get(self, name: str) -> DeploymentPublic:
        dep = await asyncio.to_thread(self.store.get, name)
        if dep is None:
            raise NotFound(f"no deployment named {name!r}; GET /v1/deployments lists them")
        return self.view(dep)

    async def list(self) -> list[DeploymentPublic]:
        return [self.view(d) for d in await asyncio.to_thread(self.store.list)]

    async def delete(self, name: str) -> None:
        async with self._lock:
            if await asyncio.to_thread(self.store.get, name) is None:
                raise NotFound(f"no deployment named {name!r}; GET /v1/deployments lists them")
            await self._stop_pods(name)
            await asyncio.to_thread(self.store.delete, name)
        log.info("deployment deleted", extra={"deployment": name})

    async def restore(self) -> None:
        """Start the pods of every stored deployment (after deploy-control starts)."""
        for dep in await asyncio.to_thread(self.store.list):
            try:
                await self._start_pods(dep)
            except AimpError as exc:
                log.error(
                    "cannot restore deployment", extra={"deployment": dep.name, "error": exc.detail}
                )

    async def _start_pods(self, dep: Deployment) -> None:
        for replica in range(dep.replicas):
            await self.backend.start_pod(PodSpec(dep.name, replica, dep.model_file, dep.framework))

    async def _stop_pods(self, name: str) -> None:
        await asyncio.gather(*(self.backend.stop_pod(p.pod_id) for p in self.backend.pods(name)))
