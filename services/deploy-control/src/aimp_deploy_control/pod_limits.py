"""The limits of a new local pod's server, beside the pods already running (limits.py).

CPUs are spread: the new pod gets the CPUs fewest running pods are pinned to. GPUs
are assigned with the same best-fit placement the inventory uses (gpu_packing.py) on
this host's GPUs (NVML), the running pods' assignments placed first; without a GPU
on the host nothing is assigned (the deployment's GPU check refuses such a request
before any pod starts).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from aimp_core.errors import Conflict
from aimp_deploy_control import gpu_packing, limits, nvml
from aimp_deploy_control.backend import Resources
from aimp_deploy_control.limits import ProcessLimits

NODE = "local"


def _request(key: str, resources: Resources) -> gpu_packing.GpuRequest:
    if resources.gpu_mem_mib is not None:
        return gpu_packing.GpuRequest(key, mem_mib=resources.gpu_mem_mib)
    return gpu_packing.GpuRequest(key, whole=resources.gpu_count)


def assign_gpus(
    host: Sequence[tuple[int, int]],
    running: Sequence[tuple[Resources, ProcessLimits]],
    new: Resources,
) -> tuple[int, ...]:
    """GPU indices for ``new`` on GPUs ``host`` ((index, memory MiB) each), where the
    ``running`` pods hold theirs; Conflict with the reason when it does not fit."""
    gpus = [gpu_packing.Gpu(NODE, index, memory) for index, memory in host]
    for res, lim in running:
        if not res.wants_gpu or not lim.gpus:
            continue
        held = set(lim.gpus)
        gpus = [
            g
            if g.index not in held
            else (
                gpu_packing.Gpu(
                    NODE,
                    g.index,
                    g.memory_mib,
                    used_mib=g.used_mib + res.gpu_mem_mib,
                    whole=g.whole,
                    shares=g.shares + 1,
                )
                if res.gpu_mem_mib is not None
                else gpu_packing.Gpu(NODE, g.index, g.memory_mib, g.used_mib, True, g.shares)
            )
            for g in gpus
        ]
    outcome, _after = gpu_packing.place(gpus, _request("new pod", new))
    if isinstance(outcome, gpu_packing.Refused):
        raise Conflict(f"cannot start the pod on this host's GPUs: it {outcome.reason}")
    return tuple(sorted(index for _node, index in outcome.gpus))


async def for_pod(
    resources: Resources, running: Sequence[tuple[Resources, ProcessLimits]]
) -> ProcessLimits:
    """The limits of a new pod asking for ``resources`` (none when it asks for none)."""
    gpus = None
    if resources.wants_gpu:
        host = await asyncio.to_thread(nvml.read_gpus)
        if host.gpus:
            gpus = assign_gpus(
                [(g.index, g.memory_total_mib) for g in host.gpus], running, resources
            )
    load = Counter(cpu for _res, lim in running for cpu in lim.cpus)
    return limits.plan(
        resources.cpu,
        resources.memory_mib,
        available_cpus=limits.available_cpus(),
        cpu_load=load,
        gpus=gpus,
    )
