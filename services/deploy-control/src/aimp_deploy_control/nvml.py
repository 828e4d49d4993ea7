"""This host's NVIDIA GPUs through NVML (nvidia-ml-py), when a driver is present (adapter).

Without a driver (most laptops, CI) the answer is no GPUs and the reason NVML gave.
Each call initialises and shuts NVML down again: the inventory is read on demand, and
NVML holds the driver open while initialised. Calls block; run them in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no types

MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    memory_total_mib: int
    memory_used_mib: int
    #: Percent of the last sample period a kernel ran; None where the GPU does not say.
    utilization_pct: int | None
    #: pid -> GPU memory (MiB) of each compute process on it (None: not reported).
    processes: dict[int, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class HostGpus:
    gpus: list[GpuReading]
    #: Why the list is empty or partial (no driver, NVML error); None when complete.
    detail: str | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _mib(value: Any) -> int | None:
    return None if value is None else int(value) // MIB


def _utilization(handle: Any) -> int | None:
    try:
        return int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except pynvml.NVMLError:
        return None


def _processes(handle: Any) -> dict[int, int | None]:
    try:
        running = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except pynvml.NVMLError:
        return {}
    return {int(p.pid): _mib(getattr(p, "usedGpuMemory", None)) for p in running}


def read_gpus() -> HostGpus:
    """Every GPU NVML sees, or none with the reason."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return HostGpus([], f"no NVIDIA driver on this host (NVML: {exc})")
    try:
        out = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                GpuReading(
                    index=index,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_total_mib=int(memory.total) // MIB,
                    memory_used_mib=int(memory.used) // MIB,
                    utilization_pct=_utilization(handle),
                    processes=_processes(handle),
                )
            )
        return HostGpus(out, None if out else "NVML found a driver but no GPU")
    except pynvml.NVMLError as exc:
        return HostGpus([], f"NVML failed to read the GPUs: {exc}")
    finally:
        pynvml.nvmlShutdown()
