"""Where pods run: the interface every orchestrator backend implements.

The local backend runs processes on this machine; a Kubernetes backend (later)
will create Deployments and Pods through the API server. deploy-control's
use-cases only ever talk to :class:`PodBackend`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aimp_deploy_control.lifecycle import PodState


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

    @property
    def pod_id(self) -> str:
        return f"{self.deployment}-{self.replica}"


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


class PodBackend(Protocol):
    async def start(self) -> None:
        """Begin supervising (called once, before any pod is started)."""

    async def start_pod(self, spec: PodSpec) -> PodInfo:
        """Launch the pod and return at once (it reports STARTING until ready)."""

    async def stop_pod(self, pod_id: str) -> None:
        """Stop the pod gracefully (drain first) and forget it; unknown ids are ignored."""

    def pods(self, deployment: str | None = None) -> list[PodInfo]:
        """Every pod this backend runs, or those of one deployment."""

    async def close(self) -> None:
        """Stop every pod gracefully and stop supervising."""
