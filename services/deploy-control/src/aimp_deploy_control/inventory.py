"""Nodes, their CPU, memory and GPUs, and the pods on each with their usage.

The local backend's node is this host: psutil for CPU and memory (the whole host, and
each pod's processes with their children, CPU sampled over a short interval), NVML for
GPUs. On Kubernetes the nodes come from the API server (k8s_inventory.py).

GPU checks before a deployment starts (:meth:`Inventory.gpu_refusal`) pack the GPU
requests of every deployment onto the GPUs known here (gpu_packing.py); GPU memory that
other programs use is shown, not reserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import psutil

from aimp_deploy_control import gpu_packing, nvml
from aimp_deploy_control.backend import PodBackend, PodInfo, Resources

log = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str | None
    memory_total_mib: int | None
    memory_used_mib: int | None
    utilization_pct: int | None


@dataclass(frozen=True)
class PodUsage:
    pod_id: str
    deployment: str
    state: str
    #: Cores in use (0.5 = half a core); None with ``usage_detail`` saying why.
    cpu_cores: float | None = None
    memory_mib: float | None = None
    gpu_memory_mib: float | None = None
    usage_detail: str | None = None


@dataclass(frozen=True)
class NodeInfo:
    name: str
    cpu_cores: float
    memory_mib: int
    cpu_used_pct: float | None
    memory_used_mib: int | None
    gpus: list[GpuInfo]
    #: Why GPUs are missing or partly known; None when NVML answered in full.
    gpu_detail: str | None
    pods: list[PodUsage] = field(default_factory=list)


@dataclass(frozen=True)
class Demand:
    """One deployment's replicas and what each asks for (for the GPU check)."""

    name: str
    replicas: int
    resources: Resources


def _requests(demands: Sequence[Demand]) -> list[gpu_packing.GpuRequest]:
    out: list[gpu_packing.GpuRequest] = []
    for d in demands:
        out += gpu_packing.replica_requests(
            d.name, d.replicas, gpu_count=d.resources.gpu_count, gpu_mem_mib=d.resources.gpu_mem_mib
        )
    return out


def packing_gpus(nodes: Sequence[NodeInfo]) -> list[gpu_packing.Gpu] | None:
    """The GPUs to pack onto, or None when some GPU's memory is unknown (then the
    orchestrator's scheduler decides alone)."""
    gpus = []
    for node in nodes:
        for g in node.gpus:
            if g.memory_total_mib is None:
                return None
            gpus.append(gpu_packing.Gpu(node.name, g.index, g.memory_total_mib))
    return gpus


# -- the local host ----------------------------------------------------------------------


def _family(pid: int) -> list[psutil.Process]:
    """The process and its descendants (the pod's server may run tritonserver as a child)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_start(procs: list[psutil.Process]) -> None:
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)


def _usage(procs: list[psutil.Process], gpu_mem: dict[int, int | None]) -> tuple[float, ...]:
    cpu = mem = gpu = 0.0
    for p in procs:
        try:
            cpu += p.cpu_percent(None) / 100
            mem += p.memory_info().rss / MIB
        except psutil.Error:
            continue
        gpu += gpu_mem.get(p.pid) or 0
    return cpu, mem, gpu


def _local_node(pods: Sequence[PodInfo], gpus: nvml.HostGpus, sample_s: float) -> NodeInfo:
    """Blocking (sleeps ``sample_s`` to measure CPU): run it in a thread."""
    families = {
        p.pod_id: [proc for x in p.processes if x.alive and x.pid for proc in _family(x.pid)]
        for p in pods
    }
    for procs in families.values():
        _cpu_start(procs)
    psutil.cpu_percent(None)
    time.sleep(sample_s)
    host_cpu = psutil.cpu_percent(None)
    gpu_mem = {pid: mib for g in gpus.gpus for pid, mib in g.processes.items()}
    usages = []
    for p in pods:
        procs = families[p.pod_id]
        if not procs:
            usages.append(PodUsage(p.pod_id, p.deployment, p.state, usage_detail="no live process"))
            continue
        cpu, mem, gpu = _usage(procs, gpu_mem)
        usages.append(
            PodUsage(p.pod_id, p.deployment, p.state, round(cpu, 3), round(mem, 1), gpu or None)
        )
    vm = psutil.virtual_memory()
    return NodeInfo(
        name=socket.gethostname(),
        cpu_cores=float(psutil.cpu_count() or 1),
        memory_mib=int(vm.total // MIB),
        cpu_used_pct=host_cpu,
        memory_used_mib=int((vm.total - vm.available) // MIB),
        gpus=[
            GpuInfo(g.index, g.name, g.memory_total_mib, g.memory_used_mib, g.utilization_pct)
            for g in gpus.gpus
        ],
        gpu_detail=gpus.detail,
        pods=usages,
    )


NodeReader = Callable[[Sequence[PodInfo]], Awaitable[list[NodeInfo]]]


class Inventory:
    """Answers GET /v1/nodes and the GPU check for one backend."""

    def __init__(
        self,
        backend: PodBackend,
        *,
        remote_nodes: NodeReader | None = None,
        read_gpus: Callable[[], nvml.HostGpus] = nvml.read_gpus,
        cpu_sample_s: float = 0.2,
    ) -> None:
        self.backend = backend
        self._remote = remote_nodes
        self._read_gpus = read_gpus
        self._sample_s = cpu_sample_s

    async def nodes(self) -> list[NodeInfo]:
        pods = self.backend.pods()
        if self._remote is not None:
            return await self._remote(pods)
        gpus = await asyncio.to_thread(self._read_gpus)
        return [await asyncio.to_thread(_local_node, pods, gpus, self._sample_s)]

    async def gpu_refusal(self, new: Demand, existing: Sequence[Demand]) -> str | None:
        """Why ``new`` cannot get its GPUs beside the ``existing`` deployments (None: it
        fits, asks for no GPU, or the GPUs' memory is unknown here)."""
        wanted = _requests([new])
        if not wanted:
            return None
        if self._remote is not None:
            gpus = packing_gpus(await self._remote([]))
        else:
            host = await asyncio.to_thread(self._read_gpus)
            gpus = [
                gpu_packing.Gpu(socket.gethostname(), g.index, g.memory_total_mib)
                for g in host.gpus
            ]
        if gpus is None:
            return None
        others = [d for d in existing if d.name != new.name]
        return gpu_packing.refusal_for(gpus, _requests(others), wanted)
