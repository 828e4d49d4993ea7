"""A revision's pods: what a request serves, the file its server loads, the GPU check,
the pod specs, and starting or stopping pods to reach a count (shared by service.py and
releases.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

from aimp_core.errors import BadRequest
from aimp_deploy_control import portable, runtimes
from aimp_deploy_control.backend import PodBackend, PodInfo, PodSpec, Resources
from aimp_deploy_control.inventory import Demand, Inventory
from aimp_deploy_control.model_db import ModelVersion
from aimp_deploy_control.models import ModelRegistry
from aimp_deploy_control.plans import scale_plan
from aimp_deploy_control.resources import ResourcesSpec
from aimp_deploy_control.revision_store import Revision
from aimp_deploy_control.revisions import RUNS_PODS
from aimp_deploy_control.schemas import RevisionCreate
from aimp_deploy_control.settings import DeployControlSettings
from aimp_deploy_control.store import DeploymentStore
from aimp_deploy_control.validation import validate_model_file


@dataclasses.dataclass(frozen=True)
class Source:
    """What a create or new-revision request serves, resolved and checked."""

    framework: str
    model_file: str
    version: ModelVersion | None

    @property
    def model(self) -> tuple[str, int] | None:
        return (self.version.model, self.version.version) if self.version else None


class RevisionPods:
    def __init__(
        self,
        store: DeploymentStore,
        backend: PodBackend,
        settings: DeployControlSettings,
        models: ModelRegistry | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.settings = settings
        self.models = models
        self.inventory = inventory

    async def revisions(self, name: str) -> list[Revision]:
        return await asyncio.to_thread(self.store.revisions, name)

    def pods_of(self, name: str, revision: str) -> list[PodInfo]:
        return [p for p in self.backend.pods(name) if p.revision == revision]

    async def source_of(self, req: RevisionCreate) -> Source:
        """The framework, file and registered version a request serves (400 when wrong)."""
        version = None
        if req.model is not None:
            version = await self.version_of(req)
            framework, model_file = version.framework, ""
        else:
            assert req.model_file is not None  # RevisionCreate requires one of the two
            framework = req.framework or runtimes.SKLEARN
            if framework == runtimes.PYTHON:
                raise BadRequest(
                    "a custom Python handler needs its schema: upload it with POST "
                    "/v1/models/{model}/versions and deploy it with 'model' instead of 'model_file'"
                )
            model_file = str(validate_model_file(req.model_file))
        runtimes.validate_runtime(req.runtime, framework)
        return Source(framework, model_file, version)

    async def local(self, src: Source) -> str:
        if src.version is not None and self.models is not None:
            return str(await self.models.local_file(src.version))
        return src.model_file

    async def served_for_source(self, name: str, revision: str, src: Source, runtime: str) -> str:
        return await self.served_file(name, revision, await self.local(src), runtime)

    async def served_for(self, name: str, rev: Revision) -> str:
        return await self.served_file(name, rev.name, await self.source_file(rev), rev.runtime)

    async def check_gpus(
        self, name: str, revision: str, resources: dict[str, object] | None, replicas: int
    ) -> None:
        """400 with the reason when the revision's GPUs cannot fit beside every other
        revision that runs pods."""
        if self.inventory is None or not resources or replicas <= 0:
            return
        key = f"{name}/{revision}"
        existing = []
        for dep in await asyncio.to_thread(self.store.list):
            for rev in await self.revisions(dep.name):
                if rev.state in RUNS_PODS and rev.resources and rev.replicas > 0:
                    res = ResourcesSpec.model_validate(rev.resources).to_resources()
                    existing.append(Demand(f"{dep.name}/{rev.name}", rev.replicas, res))
        new = Demand(key, replicas, ResourcesSpec.model_validate(resources).to_resources())
        reason = await self.inventory.gpu_refusal(new, existing)
        if reason is not None:
            raise BadRequest(reason)

    def spec_of(self, name: str, rev: Revision, served: str) -> Callable[[int], PodSpec]:
        res = (
            ResourcesSpec.model_validate(rev.resources).to_resources()
            if rev.resources
            else Resources()
        )

        serving = rev.serving

        def spec(replica: int) -> PodSpec:
            return PodSpec(
                name,
                replica,
                served,
                rev.framework,
                rev.runtime,
                revision=rev.name,
                resources=res,
                concurrency=serving.concurrency,
                queue_size=serving.queue_size,
                env=serving.env,
            )

        return spec

    async def apply_revision(
        self, name: str, rev: Revision, replicas: int, served: str | None = None
    ) -> None:
        """Run exactly ``replicas`` pods of ``rev`` (stopping one at a time: each sidecar
        drains before the next)."""
        pods = self.pods_of(name, rev.name)
        plan = scale_plan([p.replica for p in pods], replicas)
        if plan.start:
            spec = self.spec_of(name, rev, served or await self.served_for(name, rev))
            for replica in plan.start:
                await self.backend.start_pod(spec(replica))
        for replica in plan.stop:
            for pod in pods:
                if pod.replica == replica:
                    await self.backend.stop_pod(pod.pod_id)

    async def version_of(self, req: RevisionCreate) -> ModelVersion:
        if self.models is None:
            raise BadRequest("this deploy-control has no model registry; give 'model_file'")
        assert req.model is not None
        if req.framework is not None:
            raise BadRequest(
                f"'framework' goes with 'model_file' only: model {req.model!r} was uploaded "
                "with its framework; leave 'framework' out"
            )
        return await self.models.resolve(req.model, req.version)

    async def source_file(self, rev: Revision) -> str:
        """The file a revision serves on this host: its model_file, or its registered
        version's copy in the local model cache (fetched from the store if absent)."""
        if rev.model is None or rev.model_version is None:
            return rev.model_file
        if self.models is None:
            raise BadRequest(
                f"deployment {rev.deployment!r} serves a registered model, and this "
                "deploy-control has no model registry"
            )
        version = await self.models.resolve(rev.model, rev.model_version)
        return str(await self.models.local_file(version))

    async def served_file(self, name: str, revision: str, model_file: str, runtime: str) -> str:
        """What the runtime's server loads: the user's file, or its export (made if stale)."""
        reason = runtimes.unavailable_reason(self.settings, runtime)
        if reason is not None:
            raise BadRequest(reason)
        if not runtimes.RUNTIMES[runtime].needs_export:
            return model_file
        out = self.settings.deployments_dir / name / revision / portable.PORTABLE_NAME
        await portable.export(
            self.settings.deploy_control_export_command,
            Path(model_file),
            out,
            runtime=runtime,
            timeout_s=self.settings.deploy_control_export_timeout_s,
        )
        return str(out)
