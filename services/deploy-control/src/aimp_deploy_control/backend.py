"""Where pods run: the interface every orchestrator backend implements.

The local backend runs processes on this machine; the Kubernetes backend
(k8s_backend.py) creates Deployments and Services through the API server.
deploy-control's use-cases only ever talk to :class:`PodBackend`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from aimp_deploy_control.coldstart import ColdStart
from aimp_deploy_control.lifecycle import PodState


@dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration: the pod may run on nodes with a matching taint."""

    key: str | None = None
    #: "Equal" matches key and value; "Exists" matches any value of the key (or every
    #: taint when the key is None too).
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    #: None tolerates every effect of the taint.
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    #: With NoExecute: how long the pod stays after the taint appears (None: forever).
    toleration_seconds: int | None = None


@dataclass(frozen=True)
class Resources:
    """What one replica needs; every field unset means "no request, no limit"."""

    #: CPU cores (0.5 = half a core), requested and the limit.
    cpu: float | None = None
    #: Memory in MiB, requested and the limit.
    memory_mib: int | None = None
    #: Whole GPUs (``nvidia.com/gpu``); a whole GPU is never shared.
    gpu_count: int = 0
    #: A share of one GPU's memory in MiB (``aliyun.com/gpu-mem``); excludes ``gpu_count``.
    gpu_mem_mib: int | None = None
    #: Node labels the pod must run on (``nodeSelector``), as sorted (key, value) pairs.
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()

    @property
    def wants_gpu(self) -> bool:
        return self.gpu_count > 0 or self.gpu_mem_mib is not None


def pod_id(deployment: str, revision: str, replica: int) -> str:
    """``<deployment>-<revision>-<replica>`` (``iris-r2-0``); the first revision's pods
    keep the names they had before revisions existed (``iris-0``)."""
    if revision in ("1", "r1"):
        return f"{deployment}-{replica}"
    return f"{deployment}-{revision}-{replica}"


@dataclass(frozen=True)
class PodSpec:
    """One replica of one deployment."""

    deployment: str
    replica: int
    #: The file the server loads: the user's file for Triton, the exported JSON otherwise.
    model_file: str
    framework: str
    #: Which server runs it: triton, cpp or java (see runtimes.py).
    runtime: str = "triton"
    #: The revision label the gateway splits traffic on; "1" until revisions exist.
    revision: str = "1"
    resources: Resources = field(default_factory=Resources)
    #: The sidecar's concurrency limit and queue size (None: the sidecar's defaults).
    concurrency: int | None = None
    queue_size: int | None = None
    #: Extra environment of the inference server, as sorted (name, value) pairs; never
    #: AIMP_* names (revision_spec.py refuses them).
    env: tuple[tuple[str, str], ...] = ()

    @property
    def pod_id(self) -> str:
        return pod_id(self.deployment, self.revision, self.replica)

    def sidecar_admission_env(self) -> dict[str, str]:
        """The sidecar settings that carry the revision's concurrency (only those set)."""
        out = {}
        if self.concurrency is not None:
            out["AIMP_SIDECAR_CONCURRENCY_LIMIT"] = str(self.concurrency)
        if self.queue_size is not None:
            out["AIMP_SIDECAR_QUEUE_SIZE"] = str(self.queue_size)
        return out


@dataclass(frozen=True)
class ProcessInfo:
    role: str
    pid: int | None
    alive: bool
    restarts: int
    log_file: str


@dataclass(frozen=True)
class PodInfo:
    pod_id: str
    deployment: str
    replica: int
    runtime: str
    state: PodState
    #: Where callers reach the pod (its sidecar); registered in the registry as such.
    url: str
    #: The inference server itself, behind the sidecar.
    upstream_url: str
    restarts: int
    last_error: str | None
    processes: list[ProcessInfo] = field(default_factory=list)
    #: The machine it runs on (a Kubernetes node name; None while not scheduled).
    node: str | None = None
    #: The orchestrator's own name of the pod (the Kubernetes pod name), if it has one.
    backend_name: str | None = None
    #: The phases of its latest start (local backend; None where not measured).
    cold_start: ColdStart | None = None
    #: The revision it runs (PodSpec.revision).
    revision: str = "1"


class PodBackend(Protocol):
    async def start(self) -> None:
        """Begin supervising (called once, before any pod is started)."""

    async def start_pod(self, spec: PodSpec) -> PodInfo:
        """Launch the pod and return at once (it reports STARTING until ready)."""

    async def stop_pod(self, pod_id: str) -> None:
        """Stop the pod gracefully (drain first) and forget it; unknown ids are ignored."""

    def pods(self, deployment: str | None = None) -> list[PodInfo]:
        """Every pod this backend runs, or those of one deployment."""

    async def remove(self, deployment: str) -> None:
        """Stop every pod of ``deployment`` and forget it (on Kubernetes: delete its objects)."""

    async def close(self) -> None:
        """Stop every pod gracefully and stop supervising."""


class PodLogs(Protocol):
    """A backend that can read its pods' logs (the Kubernetes backend)."""

    def logs(
        self,
        pod_id: str,
        *,
        sidecar: bool = False,
        tail_lines: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[bytes]:
        """The log of the pod's inference server (or its sidecar): the last ``tail_lines``
        lines (all when None), then, with ``follow``, new output as it is written."""
