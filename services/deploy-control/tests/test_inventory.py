"""Inventory: this host's node with real processes, NVML without a driver, Kubernetes nodes
through the API stand-in, GET /v1/nodes with its role check, and the resources schema."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from pydantic import ValidationError

from aimp_deploy_control import nvml
from aimp_deploy_control.backend import PodInfo, PodSpec, ProcessInfo, Resources
from aimp_deploy_control.backends import make_inventory
from aimp_deploy_control.inventory import Demand, Inventory
from aimp_deploy_control.k8s_backend import KubernetesBackend
from aimp_deploy_control.k8s_settings import KubernetesSettings
from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.resources import ResourcesSpec
from aimp_deploy_control.settings import DeployControlSettings

from .dc_harness import bearer, in_process


class Pods:
    """Holds a fixed list of pods (the inventory only reads ``pods()``)."""

    def __init__(self, pods: list[PodInfo]) -> None:
        self._pods = pods

    def pods(self, deployment: str | None = None) -> list[PodInfo]:
        return self._pods


def pod_of(pid: int | None) -> PodInfo:
    proc = ProcessInfo("triton", pid, pid is not None, 0, "/tmp/x.log")
    return PodInfo("iris-0", "iris", 0, "triton", PodState.RUNNING, "u", "v", 0, None, [proc])


async def test_local_node_reports_this_host_and_each_pods_processes() -> None:
    """The local node has this host's cores and memory, and a pod's live process's usage."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(30)"
    )
    try:
        no_gpu = nvml.HostGpus([], "no NVIDIA driver on this host (NVML: test)")
        inv = Inventory(Pods([pod_of(child.pid)]), read_gpus=lambda: no_gpu, cpu_sample_s=0.05)
        (node,) = await inv.nodes()
    finally:
        child.kill()
        await child.wait()
    assert node.cpu_cores == psutil.cpu_count()
    assert node.memory_mib == psutil.virtual_memory().total // (1024 * 1024)
    assert node.gpus == [] and node.gpu_detail is not None and "NVML" in node.gpu_detail
    (usage,) = node.pods
    assert usage.memory_mib is not None and usage.memory_mib > 1
    assert usage.cpu_cores is not None and usage.cpu_cores >= 0


async def test_a_pod_without_a_live_process_says_so() -> None:
    """Usage of a pod with no live process is empty with the reason."""
    no_gpu = nvml.HostGpus([], "none")
    inv = Inventory(Pods([pod_of(None)]), read_gpus=lambda: no_gpu, cpu_sample_s=0.01)
    (node,) = await inv.nodes()
    assert node.pods[0].memory_mib is None and node.pods[0].usage_detail == "no live process"


def test_nvml_without_a_driver_gives_no_gpus_and_the_reason() -> None:
    """On a host without an NVIDIA driver NVML's own error is the reason."""
    found = nvml.read_gpus()
    if found.gpus:
        pytest.skip("this host has an NVIDIA driver")
    assert found.detail is not None and "NVML" in found.detail


async def test_gpu_check_refuses_a_share_that_does_not_fit() -> None:
    """Beside a deployment holding 10000 MiB of a 16000 MiB GPU, 8000 MiB more is refused."""
    gpu = nvml.GpuReading(0, "A10", 16000, 500, 3)
    inv = Inventory(Pods([]), read_gpus=lambda: nvml.HostGpus([gpu]))
    old = Demand("old", 1, Resources(gpu_mem_mib=10000))
    reason = await inv.gpu_refusal(Demand("new", 1, Resources(gpu_mem_mib=8000)), [old])
    assert (
        reason is not None and "needs 8000 MiB" in reason and "largest free share is 6000" in reason
    )
    assert await inv.gpu_refusal(Demand("new", 1, Resources(gpu_mem_mib=6000)), [old]) is None
    assert await inv.gpu_refusal(Demand("cpu", 3, Resources(cpu=1)), [old]) is None


GPU_NODE = {
    "metadata": {
        "name": "n1",
        "labels": {"nvidia.com/gpu.product": "NVIDIA-A10", "nvidia.com/gpu.memory": "23028"},
    },
    "status": {"capacity": {"cpu": "16", "memory": "65536Mi", "nvidia.com/gpu": "2"}},
}
SHARE_NODE = {
    "metadata": {"name": "n2"},
    "status": {
        "capacity": {
            "cpu": "8",
            "memory": "32Gi",
            "aliyun.com/gpu-count": "1",
            "aliyun.com/gpu-mem": "15",
        }
    },
}


async def test_kubernetes_nodes_show_gpus_and_pods_with_metrics(
    standin: Any, tmp_path: Path
) -> None:
    """Nodes come from the API with their GPUs; pod usage is null until metrics-server answers."""
    standin.nodes = [GPU_NODE, SHARE_NODE]
    k8s = KubernetesSettings(namespace="aimp", k8s_api_url=standin.url, k8s_poll_interval_s=3600)
    backend = KubernetesBackend(DeployControlSettings(home=tmp_path), k8s)
    await backend.start()
    try:
        await backend.start_pod(PodSpec("iris", 0, "/app/models/iris/model.joblib", "sklearn"))
        inv = make_inventory(backend)
        n1, n2 = await inv.nodes()
        assert (n1.name, n1.cpu_cores, n1.memory_mib) == ("n1", 16.0, 65536)
        assert [(g.index, g.name, g.memory_total_mib) for g in n1.gpus] == [
            (0, "NVIDIA-A10", 23028),
            (1, "NVIDIA-A10", 23028),
        ]
        assert [g.memory_total_mib for g in n2.gpus] == [15 * 1024]
        (usage,) = n1.pods
        assert usage.cpu_cores is None and "metrics-server did not answer" in (
            usage.usage_detail or ""
        )
        (pod,) = backend.pods("iris")
        standin.pod_metrics = [
            {
                "metadata": {"name": pod.backend_name},
                "containers": [
                    {"name": "server", "usage": {"cpu": "250m", "memory": "512Mi"}},
                    {"name": "sidecar", "usage": {"cpu": "50000000n", "memory": "64Mi"}},
                ],
            }
        ]
        (usage,) = (await inv.nodes())[0].pods
        assert (usage.cpu_cores, usage.memory_mib) == (0.3, 576.0)
        # 24000 MiB fits no GPU: the largest is an A10 (n2's gpushare GPU has 15 GiB).
        reason = await inv.gpu_refusal(Demand("big", 1, Resources(gpu_mem_mib=24000)), [])
        assert reason is not None and "largest free share is 23028 MiB on node n1 GPU 0" in reason
    finally:
        await backend.close()


@pytest.fixture
async def api(aimp_home: Path, dc_keys: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(dc_keys, home=aimp_home) as http:
        yield http


async def test_nodes_endpoint_needs_a_reader_and_lists_this_host(
    api: httpx.AsyncClient, dc_keys: Any
) -> None:
    """GET /v1/nodes is 401 without a token, 403 for an invoker, and this host for an operator."""
    assert (await api.get("/v1/nodes")).status_code == 401
    assert (await api.get("/v1/nodes", headers=bearer(dc_keys, "invoker"))).status_code == 403
    resp = await api.get("/v1/nodes", headers=bearer(dc_keys, "operator"))
    assert resp.status_code == 200
    (node,) = resp.json()["nodes"]
    assert node["cpu_cores"] == psutil.cpu_count() and node["pods"] == []
    assert node["gpus"] or node["gpu_detail"]


def test_resources_schema_refuses_two_kinds_of_gpu_and_bad_labels() -> None:
    """gpu_count with gpu_mem_mib, or a node selector that is no label, are refused clearly."""
    with pytest.raises(ValidationError, match="either gpu_count"):
        ResourcesSpec(gpu_count=1, gpu_mem_mib=1000)
    with pytest.raises(ValidationError, match="is not a Kubernetes label"):
        ResourcesSpec(node_selector={"bad key!": "x"})
    with pytest.raises(ValidationError, match="takes no value"):
        ResourcesSpec.model_validate(
            {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}
        )
    spec = ResourcesSpec.model_validate(
        {
            "cpu": 2,
            "gpu_mem_mib": 4096,
            "node_selector": {"gpu": "a10"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        }
    )
    assert ResourcesSpec.of(spec.to_resources()) == spec
