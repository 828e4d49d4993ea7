"""Unit tests of the rollout runner's bookkeeping, with an in-memory backend and probe.

The runner's real use (processes, sidecars, the registry) is covered by
test_runtimes_integration; here only its progress, failure and cancel logic.
"""

from __future__ import annotations

import asyncio

from aimp_deploy_control.backend import PodInfo, PodSpec
from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.plans import plan_rollout
from aimp_deploy_control.rollout import Rollout, RolloutRunner, RolloutState


class MemoryBackend:
    """Records calls; pods are UP once the probe says so."""

    def __init__(self, replicas: int) -> None:
        self.calls: list[str] = []
        self.live = {f"iris-{r}" for r in range(replicas)}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def start_pod(self, spec: PodSpec) -> PodInfo:
        self.calls.append(f"start {spec.pod_id}")
        self.live.add(spec.pod_id)
        return self._info(spec.pod_id)

    async def stop_pod(self, pod_id: str) -> None:
        self.calls.append(f"stop {pod_id}")
        self.live.discard(pod_id)

    def pods(self, deployment: str | None = None) -> list[PodInfo]:
        return [self._info(p) for p in sorted(self.live)]

    def _info(self, pod_id: str) -> PodInfo:
        replica = int(pod_id.rsplit("-", 1)[1])
        return PodInfo(
            pod_id, "iris", replica, "java", PodState.STARTING, "http://x", "http://y", 0, "boom"
        )


class Probe:
    def __init__(self, never_up: set[str] | None = None) -> None:
        self.never_up = never_up or set()
        self.asked = asyncio.Event()

    async def is_up(self, pod: PodInfo) -> bool:
        self.asked.set()
        return pod.pod_id not in self.never_up


def spec_of(replica: int) -> PodSpec:
    return PodSpec("iris", replica, "/m.json", "sklearn", "java")


def runner(backend: MemoryBackend, probe: Probe, timeout_s: float = 1.0) -> RolloutRunner:
    return RolloutRunner(
        backend,
        probe,
        ready_timeout_s=timeout_s,
        poll_interval_s=0.01,
    )


async def test_success_counts_each_replacement() -> None:
    """Both replicas are stopped, started and waited for in order; progress ends at 2 of 2."""
    backend, probe = MemoryBackend(2), Probe()
    progress = Rollout(total=2)
    steps = plan_rollout({0: True, 1: True}, surge_allowed=True)
    await runner(backend, probe).run("iris", steps, spec_of, progress, asyncio.Event())
    assert backend.calls == ["stop iris-0", "start iris-0", "stop iris-1", "start iris-1"]
    assert progress.state is RolloutState.SUCCEEDED and progress.replaced == 2
    assert progress.finished_at is not None and progress.error is None and progress.current is None


async def test_a_replacement_that_never_comes_up_fails_the_rollout() -> None:
    """The rollout stops at the replacement that is not UP in time; later replicas are left
    serving, and the error names the pod, the wait and its last error."""
    backend, probe = MemoryBackend(2), Probe(never_up={"iris-0"})
    progress = Rollout(total=2)
    steps = plan_rollout({0: True, 1: True}, surge_allowed=True)
    await runner(backend, probe, 0.2).run("iris", steps, spec_of, progress, asyncio.Event())
    assert backend.calls == ["stop iris-0", "start iris-0"]
    assert progress.state is RolloutState.FAILED and progress.replaced == 0
    assert progress.error is not None
    assert "iris-0 was not UP within 0.2 s" in progress.error and "boom" in progress.error
    assert "iris-1" in backend.live


async def test_cancel_stops_between_steps() -> None:
    """A cancel while waiting ends the rollout as cancelled without further steps."""
    backend, probe = MemoryBackend(2), Probe(never_up={"iris-0"})
    progress, cancel = Rollout(total=2), asyncio.Event()
    steps = plan_rollout({0: True, 1: True}, surge_allowed=True)
    task = asyncio.create_task(
        runner(backend, probe, 30).run("iris", steps, spec_of, progress, cancel)
    )
    await asyncio.wait_for(probe.asked.wait(), 2)
    assert progress.current == "waiting for iris-0 to be UP"
    cancel.set()
    await asyncio.wait_for(task, 2)
    assert progress.state is RolloutState.CANCELLED
    assert backend.calls == ["stop iris-0", "start iris-0"]


async def test_a_backend_fault_is_recorded_not_raised() -> None:
    """An unexpected error in a step fails the rollout with its message."""

    class Broken(MemoryBackend):
        async def stop_pod(self, pod_id: str) -> None:
            raise RuntimeError("disk full")

    progress = Rollout(total=1)
    steps = plan_rollout({0: False}, surge_allowed=False)
    await runner(Broken(1), Probe()).run("iris", steps, spec_of, progress, asyncio.Event())
    assert progress.state is RolloutState.FAILED and progress.error == "RuntimeError: disk full"
