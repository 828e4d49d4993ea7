"""Runs pods on Kubernetes: one Deployment and one Service per deployment revision.

The mapping onto :class:`PodBackend`:

- ``start_pod(replica n of revision r)``: create r's Deployment (POST) and its Service
  when missing; replace it (PUT) when its pod template changed (the spec-hash
  annotation differs); otherwise make sure it runs at least n+1 replicas (PUT on its
  scale subresource). Each revision has its own Deployment and Service
  (``<deployment>-r<N>``), so a service's revisions run side by side.
- ``stop_pod(<pod id>)``: for the revision's highest replica, scale its Deployment to n;
  for a lower one (a rolling restart replacing it) delete that pod, and the Deployment
  starts a new one in its place. Kubernetes sends SIGTERM: the sidecar drains within the
  grace period. A revision scaled to 0 keeps its Deployment (for a rollback).
- ``remove``: delete every revision's Deployment (pods follow, each draining) and Service.
- ``pods``: the last listing of the pods (refreshed every ``k8s_poll_interval_s`` and
  after each change), numbered per revision by k8s_pods.assign_slots.

Only Deployments labelled ``app.kubernetes.io/managed-by=aimp-deploy-control`` are
touched. Blocking client calls run in threads (k8s_client.KubernetesApi).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from aimp_core.errors import AimpError, BadRequest, Conflict, NotFound
from aimp_deploy_control import k8s_manifests as m
from aimp_deploy_control.backend import PodInfo, PodSpec, pod_id
from aimp_deploy_control.k8s_client import KubernetesApi, build_api_client
from aimp_deploy_control.k8s_known import KnownRevision, known_revision, order, pods_by_revision
from aimp_deploy_control.k8s_pods import ObservedPod
from aimp_deploy_control.k8s_settings import KubernetesSettings
from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.settings import DeployControlSettings

log = logging.getLogger(__name__)

MANAGED = f"app.kubernetes.io/managed-by={m.MANAGED_BY}"


def template_config(
    settings: DeployControlSettings, k8s: KubernetesSettings
) -> m.PodTemplateConfig:
    images = {"triton": k8s.k8s_triton_image, "cpp": k8s.k8s_cpp_image, "java": k8s.k8s_java_image}
    return m.PodTemplateConfig(
        namespace=k8s.namespace,
        server_images={k: v for k, v in images.items() if v},
        sidecar_image=k8s.k8s_sidecar_image,
        registry_url=settings.registry_url,
        jwks_url=settings.jwks_url,
        token_issuer=settings.token_issuer,
        image_pull_policy=k8s.k8s_image_pull_policy,
        models_claim=k8s.k8s_models_claim,
        models_mount_path=k8s.k8s_models_mount_path,
        gpu_mem_unit=k8s.k8s_gpu_mem_unit,
        sidecar_port=k8s.k8s_sidecar_port,
        drain_s=k8s.k8s_drain_s,
    )


class KubernetesBackend:
    """PodBackend on a Kubernetes cluster (``AIMP_DEPLOY_CONTROL_BACKEND=kubernetes``)."""

    def __init__(
        self,
        settings: DeployControlSettings,
        k8s: KubernetesSettings,
        *,
        api: KubernetesApi | None = None,
    ) -> None:
        self.k8s = k8s
        self.cfg = template_config(settings, k8s)
        self.api = api or KubernetesApi(build_api_client(k8s), timeout_s=k8s.k8s_timeout_s)
        #: By Kubernetes object name: one entry per revision.
        self._deps: dict[str, KnownRevision] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._writes = 0  # bumped by each change: a listing begun before it is stale
        self._task: asyncio.Task[None] | None = None
        #: Why the last refresh failed (None after a good one), for the inventory.
        self.last_error: str | None = None

    @property
    def namespace(self) -> str:
        return self.cfg.namespace

    # -- PodBackend -----------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.refresh()
        except AimpError as exc:
            log.error("cannot list pods on Kubernetes", extra={"error": exc.detail})
        self._task = asyncio.create_task(self._poll(), name="k8s-refresh")

    async def start_pod(self, spec: PodSpec) -> PodInfo:
        async with self._locks[spec.deployment]:
            try:
                body = m.deployment(spec, spec.replica + 1, self.cfg)
            except m.ManifestError as exc:
                raise BadRequest(str(exc)) from None
            name = body["metadata"]["name"]
            want_hash = body["metadata"]["annotations"][m.HASH_ANNOTATION]
            known = self._deps.get(name) or await self._read(name)
            self._writes += 1
            if known is None:
                await self.api.call(
                    f"create Deployment {name}",
                    self.api.apps.create_namespaced_deployment,
                    self.namespace,
                    body,
                )
                known = KnownRevision(
                    name,
                    spec.deployment,
                    spec.revision,
                    spec.runtime,
                    spec.replica + 1,
                    want_hash,
                )
                self._deps[name] = known
                await self._ensure_service(spec)
            elif (known.service, known.revision) != (spec.deployment, spec.revision):
                raise Conflict(
                    f"the Kubernetes Deployment {name} runs revision {known.revision} of "
                    f"{known.service!r}, not {spec.revision} of {spec.deployment!r} (its "
                    "selector cannot change); DELETE the deployment first"
                )
            elif known.spec_hash != want_hash:
                body["spec"]["replicas"] = max(known.replicas, spec.replica + 1)
                await self.api.call(
                    f"replace Deployment {name}",
                    self.api.apps.replace_namespaced_deployment,
                    name,
                    self.namespace,
                    body,
                )
                known.replicas, known.spec_hash = body["spec"]["replicas"], want_hash
                known.runtime = spec.runtime
                await self._ensure_service(spec)
            elif known.replicas < spec.replica + 1:
                await self._scale(known, spec.replica + 1)
            known.reassign()
        await self._refresh_quietly()
        known = self._deps.get(name, known)
        return self._infos(known)[spec.replica]

    async def stop_pod(self, pod_id: str) -> None:
        found = self._locate(pod_id)
        if found is None:
            return
        name, replica = found[0].name, found[1]
        async with self._locks[found[0].service]:
            known = self._deps.get(name)
            if known is None or replica >= known.replicas:
                return
            self._writes += 1
            if replica == known.replicas - 1:
                await self._scale(known, replica)
            elif (pod := known.slots.get(replica)) is not None:
                await self.api.call_or_none(
                    f"delete pod {pod}",
                    self.api.core.delete_namespaced_pod,
                    pod,
                    self.namespace,
                )
                known.pods = [
                    replace(p, terminating=True) if p.name == pod else p for p in known.pods
                ]
            known.reassign()
        await self._refresh_quietly()

    def pods(self, deployment: str | None = None) -> list[PodInfo]:
        out: list[PodInfo] = []
        for known in sorted(self._deps.values(), key=order):
            if deployment is None or known.service == deployment:
                out.extend(self._infos(known))
        return out

    async def remove(self, deployment: str) -> None:
        """Delete every revision's Deployment and Service, known or found by label."""
        async with self._locks[deployment]:
            self._writes += 1
            known = {n for n, k in self._deps.items() if k.service == deployment}
            for name in known:
                del self._deps[name]
            names = known | await self._names_of(deployment)
            for name in sorted(names):
                await self.api.call_or_none(
                    f"delete Deployment {name}",
                    self.api.apps.delete_namespaced_deployment,
                    name,
                    self.namespace,
                    body=m.DELETE_OPTIONS,
                )
                await self.api.call_or_none(
                    f"delete Service {name}",
                    self.api.core.delete_namespaced_service,
                    name,
                    self.namespace,
                )

    async def close(self) -> None:
        """Stop refreshing; the pods keep running (Kubernetes keeps them, not this process)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self.api.close)

    # -- logs -----------------------------------------------------------------------------

    async def logs(
        self,
        pod_id: str,
        *,
        sidecar: bool = False,
        tail_lines: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[bytes]:
        pod = self._pod_name(pod_id)
        params: dict[str, Any] = {"container": "sidecar" if sidecar else "server"}
        if tail_lines is not None:
            params["tail_lines"] = tail_lines
        what = f"read the log of pod {pod}"
        read = self.api.core.read_namespaced_pod_log
        if not follow:
            text = await self._log_text(what, pod, params)
            yield text
            return
        async for chunk in self.api.stream(
            what,
            read,
            pod,
            self.namespace,
            follow=True,
            idle_timeout_s=self.k8s.k8s_log_idle_timeout_s,
            **params,
        ):
            yield chunk

    async def _log_text(self, what: str, pod: str, params: Mapping[str, Any]) -> bytes:
        chunks = [
            c
            async for c in self.api.stream(
                what,
                self.api.core.read_namespaced_pod_log,
                pod,
                self.namespace,
                idle_timeout_s=self.k8s.k8s_timeout_s,
                **params,
            )
        ]
        return b"".join(chunks)

    def _pod_name(self, pod: str) -> str:
        found = self._locate(pod)
        name = found[0].slots.get(found[1]) if found else None
        if name is None:
            raise NotFound(f"no pod {pod!r} on Kubernetes now: GET /v1/pods lists the pods")
        return name

    def _locate(self, pod: str) -> tuple[KnownRevision, int] | None:
        """The revision and replica a pod id names (None when no known revision has it)."""
        for known in sorted(self._deps.values(), key=order):
            replica = known.replica_of(pod)
            if replica is not None:
                return known, replica
        return None

    # -- reading the cluster ----------------------------------------------------------------

    async def refresh(self) -> None:
        """List the managed Deployments and their pods (two LIST calls)."""
        writes = self._writes
        deps = await self.api.call(
            "list Deployments",
            self.api.apps.list_namespaced_deployment,
            self.namespace,
            label_selector=MANAGED,
        )
        pods = await self.api.call(
            "list pods", self.api.core.list_namespaced_pod, self.namespace, label_selector=MANAGED
        )
        by_revision = pods_by_revision(pods.get("items", []))
        seen = set()
        for item in deps.get("items", []):
            rev = known_revision(item)
            if rev is None:
                continue
            seen.add(rev.name)
            known = self._deps.get(rev.name)
            idle = writes == self._writes and not self._locks[rev.service].locked()
            if known is None or idle:
                if known is not None:
                    rev.slots = known.slots
                known = self._deps[rev.name] = rev
            known.pods = by_revision.get((known.service, known.revision), [])
            known.reassign()
        if writes == self._writes:
            for gone in set(self._deps) - seen:
                del self._deps[gone]  # deleted by someone else
        self.last_error = None

    async def _read(self, name: str) -> KnownRevision | None:
        item = await self.api.call_or_none(
            f"read Deployment {name}",
            self.api.apps.read_namespaced_deployment,
            name,
            self.namespace,
        )
        found = known_revision(item) if item else None
        if found is not None:
            self._deps[name] = found
        return found

    async def _names_of(self, deployment: str) -> set[str]:
        listed = await self.api.call(
            "list Deployments",
            self.api.apps.list_namespaced_deployment,
            self.namespace,
            label_selector=f"{MANAGED},{m.SERVICE_LABEL}={deployment}",
        )
        return {i["metadata"]["name"] for i in listed.get("items", [])}

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except AimpError as exc:
            self.last_error = exc.detail

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.k8s.k8s_poll_interval_s)
            try:
                await self.refresh()
            except AimpError as exc:
                self.last_error = exc.detail
                log.warning("cannot list pods on Kubernetes", extra={"error": exc.detail})
            except Exception:
                log.exception("Kubernetes refresh failed")

    # -- writing ------------------------------------------------------------------------------

    async def _scale(self, known: KnownRevision, replicas: int) -> None:
        await self.api.call(
            f"scale Deployment {known.name} to {replicas}",
            self.api.apps.replace_namespaced_deployment_scale,
            known.name,
            self.namespace,
            m.scale(known.name, self.namespace, replicas),
        )
        known.replicas = replicas

    async def _ensure_service(self, spec: PodSpec) -> None:
        body = m.service(spec, self.cfg)
        name = body["metadata"]["name"]
        exists = await self.api.call_or_none(
            f"read Service {name}", self.api.core.read_namespaced_service, name, self.namespace
        )
        if exists is None:
            await self.api.call(
                f"create Service {name}",
                self.api.core.create_namespaced_service,
                self.namespace,
                body,
            )

    # -- views ----------------------------------------------------------------------------------

    def _infos(self, known: KnownRevision) -> list[PodInfo]:
        by_name = {p.name: p for p in known.pods}
        infos = [
            self._info(known, replica, by_name.get(known.slots.get(replica, "")))
            for replica in range(known.replicas)
        ]
        assigned = set(known.slots.values())
        extra = sorted(
            (p for p in known.pods if p.name not in assigned), key=lambda p: (p.created, p.name)
        )
        infos += [self._info(known, known.replicas + i, pod) for i, pod in enumerate(extra)]
        return infos

    def _info(self, known: KnownRevision, replica: int, pod: ObservedPod | None) -> PodInfo:
        ip = pod.ip if pod else None
        return PodInfo(
            pod_id=pod_id(known.service, known.revision, replica),
            deployment=known.service,
            replica=replica,
            runtime=known.runtime,
            state=pod.state if pod else PodState.PENDING,
            url=f"http://{ip}:{self.cfg.sidecar_port}" if ip else "",
            upstream_url=f"http://127.0.0.1:{m.SERVER_PORTS[0]}" if ip else "",
            restarts=pod.restarts if pod else 0,
            last_error=pod.last_error if pod else None,
            node=pod.node if pod else None,
            backend_name=pod.name if pod else None,
            revision=known.revision,
        )
