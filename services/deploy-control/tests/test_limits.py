"""Local pods' resource limits: the mapping from resources (pure) and real processes."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.errors import Conflict
from aimp_deploy_control.backend import PodSpec, Resources
from aimp_deploy_control.limits import MIB, ProcessLimits, pick_cpus, plan
from aimp_deploy_control.local_backend import LocalProcessBackend, PodStartFailed
from aimp_deploy_control.pod_limits import assign_gpus
from aimp_deploy_control.settings import DeployControlSettings

needs_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="CPU affinity needs Linux and at least 2 CPUs",
)


@given(
    cpus=st.lists(st.integers(0, 63), min_size=1, max_size=16, unique=True),
    cores=st.floats(0.01, 64),
    load=st.dictionaries(st.integers(0, 63), st.integers(0, 5)),
)
def test_pick_cpus_takes_the_least_loaded_ceil_of_the_cores(
    cpus: list[int], cores: float, load: dict[int, int]
) -> None:
    """ceil(cores) available CPUs, none busier than one left out; no limit when that is all."""
    chosen = pick_cpus(cpus, cores, load)
    want = max(1, -(-cores // 1))
    if want >= len(cpus):
        assert chosen == ()
        return
    assert len(chosen) == want and set(chosen) <= set(cpus)
    left = set(cpus) - set(chosen)
    assert max(load.get(c, 0) for c in chosen) <= min(load.get(c, 0) for c in left)


def test_plan_maps_memory_to_rlimit_data_and_gpus_to_cuda_visibility() -> None:
    """memory_mib becomes RLIMIT_DATA bytes; assigned GPUs become CUDA_VISIBLE_DEVICES;
    nothing asked for changes nothing."""
    limits = plan(1.5, 256, available_cpus=[0, 1, 2, 3], cpu_load={0: 1}, gpus=(1, 3))
    assert limits.cpus == (1, 2) and limits.data_bytes == 256 * MIB
    env = limits.env({"PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    none = plan(None, None, available_cpus=[0, 1], cpu_load={})
    assert none == ProcessLimits() and none.env({"A": "b"}) == {"A": "b"}
    assert none.wrap(["/bin/true", "x"]) == ["/bin/true", "x"]
    with pytest.raises(FileNotFoundError):
        limits.wrap(["no-such-command-here"])


def test_gpu_assignment_respects_running_pods() -> None:
    """Whole GPUs go to idle GPUs only, shares best-fit beside others; no room is a 409."""
    host = [(0, 16_000), (1, 16_000)]
    whole = Resources(gpu_count=1)
    share = Resources(gpu_mem_mib=6_000)
    assert assign_gpus(host, [], whole) == (0,)
    taken = [(whole, ProcessLimits(gpus=(0,)))]
    assert assign_gpus(host, taken, whole) == (1,)
    shared = [(share, ProcessLimits(gpus=(1,)))]
    assert assign_gpus(host, shared, share) == (1,)  # best fit: the GPU already shared
    with pytest.raises(Conflict, match="GPU"):
        assign_gpus(host, [*taken, (whole, ProcessLimits(gpus=(1,)))], whole)


@needs_affinity
def test_launcher_applies_affinity_and_data_limit_to_the_real_process() -> None:
    """The command runs with the CPUs and RLIMIT_DATA given, under its own pid."""
    cpu = min(os.sched_getaffinity(0))
    argv = ProcessLimits(cpus=(cpu,), data_bytes=512 * MIB).wrap(
        [sys.executable, "-c", "import time; time.sleep(30)"]
    )
    proc = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # exec happens after the launcher started
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            if b"time.sleep" in cmdline and b"aimp_deploy_control.limits" not in cmdline:
                break
            time.sleep(0.02)
        assert os.sched_getaffinity(proc.pid) == {cpu}
        assert resource.prlimit(proc.pid, resource.RLIMIT_DATA) == (512 * MIB, 512 * MIB)
    finally:
        proc.kill()
        proc.wait()


@needs_affinity
async def test_local_backend_pins_pods_to_different_cpus(tmp_path: Path) -> None:
    """Two pods asking for one core each are spawned pinned to two different CPUs."""
    server = tmp_path / "server.py"
    server.write_text("import time\ntime.sleep(60)\n")
    settings = DeployControlSettings(
        home=tmp_path / "home",
        database_url=None,
        pod_command=[sys.executable, str(server)],
        sidecar_command=[sys.executable, str(server)],
    )
    backend = LocalProcessBackend(settings)
    one_core = Resources(cpu=1, memory_mib=1024)
    try:
        pods = [
            await backend.start_pod(PodSpec("pin", r, "m.joblib", "sklearn", resources=one_core))
            for r in (0, 1)
        ]
        pids = [next(p.pid for p in pod.processes if p.role == "triton") for pod in pods]
        assert all(pid is not None for pid in pids)

        def affinity(pid: int) -> set[int]:
            deadline = time.monotonic() + 10
            while b"aimp_deploy_control.limits" in Path(f"/proc/{pid}/cmdline").read_bytes():
                assert time.monotonic() < deadline, "the launcher did not exec the server"
                time.sleep(0.02)
            return os.sched_getaffinity(pid)

        first, second = (affinity(pid) for pid in pids if pid is not None)
        assert len(first) == len(second) == 1 and first != second
        sidecar = next(p.pid for p in pods[0].processes if p.role == "sidecar")
        assert sidecar is not None and len(os.sched_getaffinity(sidecar)) > 1  # not limited
        with pytest.raises(PodStartFailed, match="no-such-pod"):
            bad = DeployControlSettings(
                home=tmp_path / "home", database_url=None, pod_command=["no-such-pod"]
            )
            await LocalProcessBackend(bad).start_pod(
                PodSpec("bad", 0, "m.joblib", "sklearn", resources=one_core)
            )
    finally:
        await backend.close()
