"""Nodes and pod usage on Kubernetes: the Node objects, and metrics-server when it answers.

GPUs come from each node's capacity: ``nvidia.com/gpu`` (NVIDIA's device plugin; the
model and memory from GPU feature discovery's ``nvidia.com/gpu.product`` and
``nvidia.com/gpu.memory`` labels when present) or ``aliyun.com/gpu-count`` with
``aliyun.com/gpu-mem`` (gpushare: memory in the plugin's unit, GiB by default).
Per-GPU use and utilisation are not in the Kubernetes API (DCGM exporter has them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from kubernetes.utils import parse_quantity

from aimp_core.errors import AimpError
from aimp_deploy_control.backend import PodInfo
from aimp_deploy_control.inventory import GpuInfo, NodeInfo, PodUsage
from aimp_deploy_control.k8s_client import KubernetesApi
from aimp_deploy_control.k8s_manifests import GPU_MEM, MANAGED_BY, NVIDIA_GPU

MIB = Decimal(1024 * 1024)
GPU_COUNT_SHARE = "aliyun.com/gpu-count"
NO_GPU_API = "per-GPU memory use and utilisation are not in the Kubernetes API (see DCGM exporter)"


def _quantity(value: Any) -> Decimal:
    if value is None:
        return Decimal(0)
    try:
        return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]
    except ValueError:
        return Decimal(0)


def node_gpus(
    node: Mapping[str, Any], gpu_mem_unit: Literal["GiB", "MiB"]
) -> tuple[list[GpuInfo], str]:
    """A node's GPUs from its capacity and labels (pure), with what is not known."""
    capacity = (node.get("status") or {}).get("capacity") or {}
    node_labels = (node.get("metadata") or {}).get("labels") or {}
    whole = int(_quantity(capacity.get(NVIDIA_GPU)))
    shared = int(_quantity(capacity.get(GPU_COUNT_SHARE)))
    if whole:
        memory = node_labels.get("nvidia.com/gpu.memory")
        product = node_labels.get("nvidia.com/gpu.product")
        gpus = [
            GpuInfo(i, product, int(memory) if memory and memory.isdigit() else None, None, None)
            for i in range(whole)
        ]
        return gpus, NO_GPU_API
    if shared:
        total = int(_quantity(capacity.get(GPU_MEM)))
        per_gpu = total // shared * (1024 if gpu_mem_unit == "GiB" else 1)
        return [GpuInfo(i, None, per_gpu, None, None) for i in range(shared)], NO_GPU_API
    return [], f"no GPU resource ({NVIDIA_GPU} or {GPU_MEM}) on this node"


def node_info(
    node: Mapping[str, Any],
    pods: Sequence[PodUsage],
    gpu_mem_unit: Literal["GiB", "MiB"],
) -> NodeInfo:
    """One Node object as a NodeInfo (pure)."""
    capacity = (node.get("status") or {}).get("capacity") or {}
    gpus, detail = node_gpus(node, gpu_mem_unit)
    return NodeInfo(
        name=str((node.get("metadata") or {}).get("name", "")),
        cpu_cores=float(_quantity(capacity.get("cpu"))),
        memory_mib=int(_quantity(capacity.get("memory")) / MIB),
        cpu_used_pct=None,
        memory_used_mib=None,
        gpus=gpus,
        gpu_detail=detail,
        pods=list(pods),
    )


def pod_usage(
    pod: PodInfo, metrics: Mapping[str, Mapping[str, Any]] | None, why_not: str | None
) -> PodUsage:
    """A pod's usage from its PodMetrics (summed over containers), or None with why."""
    if metrics is None:
        return PodUsage(pod.pod_id, pod.deployment, pod.state, usage_detail=why_not)
    found = metrics.get(pod.backend_name or "")
    if found is None:
        return PodUsage(
            pod.pod_id, pod.deployment, pod.state, usage_detail="metrics-server has no sample yet"
        )
    containers = found.get("containers") or []
    cpu = sum((_quantity((c.get("usage") or {}).get("cpu")) for c in containers), Decimal(0))
    mem = sum((_quantity((c.get("usage") or {}).get("memory")) for c in containers), Decimal(0))
    return PodUsage(
        pod.pod_id, pod.deployment, pod.state, round(float(cpu), 3), round(float(mem / MIB), 1)
    )


class KubernetesNodes:
    """Reads nodes and pod metrics through the API (an inventory.NodeReader)."""

    def __init__(
        self, api: KubernetesApi, namespace: str, gpu_mem_unit: Literal["GiB", "MiB"]
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.gpu_mem_unit = gpu_mem_unit

    async def _metrics(self) -> tuple[dict[str, Mapping[str, Any]] | None, str | None]:
        try:
            listed = await self.api.call(
                "read pod metrics",
                self.api.custom.list_namespaced_custom_object,
                "metrics.k8s.io",
                "v1beta1",
                self.namespace,
                "pods",
                label_selector=f"app.kubernetes.io/managed-by={MANAGED_BY}",
            )
        except AimpError as exc:
            return None, f"metrics-server did not answer: {exc.detail}"
        items = listed.get("items", [])
        return {i["metadata"]["name"]: i for i in items}, None

    async def __call__(self, pods: Sequence[PodInfo]) -> list[NodeInfo]:
        nodes = await self.api.call("list nodes", self.api.core.list_node)
        metrics, why_not = await self._metrics() if pods else (None, None)
        by_node: dict[str | None, list[PodUsage]] = {}
        for pod in pods:
            by_node.setdefault(pod.node, []).append(pod_usage(pod, metrics, why_not))
        out = [
            node_info(n, by_node.pop(n["metadata"]["name"], []), self.gpu_mem_unit)
            for n in nodes.get("items", [])
        ]
        if by_node:  # pods not (yet) scheduled, or on a node that is gone
            out.append(
                NodeInfo(
                    "(unscheduled)",
                    0.0,
                    0,
                    None,
                    None,
                    [],
                    "pods waiting for a node",
                    [p for ps in by_node.values() for p in ps],
                )
            )
        return out
