"""Load-test use-cases: start one against a ready replica, record its progress, show it.

One load test per deployment runs at a time, as a background task of this process; its
row in SQL (loadtest_store.py) is written before and after every step. The replica is
chosen once at the start (a RUNNING pod, of the given revision if one is named); if it
stops meanwhile the test fails instead of silently measuring another one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from aimp_core.errors import BadRequest, Conflict, NotFound
from aimp_deploy_control.backend import PodBackend, PodInfo
from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.loadtest import (
    LoadTestState,
    Recommendation,
    SearchConfig,
    Step,
    StopReason,
    recommend,
    verdict,
)
from aimp_deploy_control.loadtest_runner import (
    LoadTestFailed,
    StepRunner,
    prepare,
    search,
    server_url,
)
from aimp_deploy_control.loadtest_settings import LoadTestSettings
from aimp_deploy_control.loadtest_store import LoadTest, LoadTestStore, StepRecord
from aimp_deploy_control.store import DeploymentStore

log = logging.getLogger(__name__)

INTERRUPTED = "deploy-control stopped while this load test ran; start it again"


@dataclass(frozen=True)
class LoadTestRequest:
    latency_target_ms: float
    max_rate_rps: float
    revision: str | None = None
    step_duration_s: float | None = None


class LoadTests:
    def __init__(
        self,
        deployments: DeploymentStore,
        backend: PodBackend,
        store: LoadTestStore,
        settings: LoadTestSettings,
    ) -> None:
        self.deployments = deployments
        self.backend = backend
        self.store = store
        self.settings = settings
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the table and fail what a previous deploy-control left running."""
        await asyncio.to_thread(self.store.create_schema)
        stale = await asyncio.to_thread(self.store.interrupt_running, INTERRUPTED)
        if stale:
            log.warning("load tests interrupted by a restart", extra={"count": stale})

    async def close(self) -> None:
        """Cancel running tests (at shutdown); each records itself as cancelled."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def get(self, name: str) -> LoadTest:
        created = await self._created(name)
        test = await asyncio.to_thread(self.store.latest, name, created)
        if test is None:
            raise NotFound(
                f"deployment {name!r} has no load test yet; POST "
                f"/v1/deployments/{name}/loadtest starts one"
            )
        return test

    async def start(self, name: str, req: LoadTestRequest) -> LoadTest:
        cfg = self._config(req)
        async with self._lock:
            created = await self._created(name)
            if name in self._tasks:
                current = await asyncio.to_thread(self.store.latest, name, created)
                step = f" (step {current.current_step})" if current else ""
                raise Conflict(
                    f"a load test of {name!r} is already running{step}; GET "
                    f"/v1/deployments/{name}/loadtest shows its progress, start another "
                    "when it has finished"
                )
            pod = self._pick(name, req.revision)
            url = server_url(pod)
            duration = req.step_duration_s or self.settings.step_duration_s
            test = await asyncio.to_thread(
                self.store.add,
                name,
                pod.pod_id,
                pod.revision,
                latency_target_ms=req.latency_target_ms,
                max_rate_rps=req.max_rate_rps,
                step_duration_s=duration,
            )
            task = asyncio.create_task(
                self._run(test, pod, url, cfg, duration), name=f"loadtest-{name}"
            )
            self._tasks[name] = task
            task.add_done_callback(lambda _t: self._tasks.pop(name, None))
        log.info("load test started", extra={"deployment": name, "pod": pod.pod_id})
        return test

    # -- helpers --------------------------------------------------------------------------

    async def _created(self, name: str) -> datetime:
        dep = await asyncio.to_thread(self.deployments.get, name)
        if dep is None:
            raise NotFound(f"no deployment named {name!r}; GET /v1/deployments lists them")
        return dep.created_at

    def _config(self, req: LoadTestRequest) -> SearchConfig:
        s = self.settings
        if req.max_rate_rps < s.min_rps:
            raise BadRequest(
                f"max_rate {req.max_rate_rps:g} is below the lowest rate tried "
                f"({s.min_rps:g} calls/s, AIMP_DEPLOY_CONTROL_LOADTEST_MIN_RPS); raise it"
            )
        return SearchConfig(
            latency_target_ms=req.latency_target_ms,
            max_rps=req.max_rate_rps,
            start_rps=s.start_rps,
            min_rps=s.min_rps,
            growth=s.growth,
            resolution=s.resolution,
            max_steps=s.max_steps,
        )

    def _pick(self, name: str, revision: str | None) -> PodInfo:
        pods = [
            p
            for p in self.backend.pods(name)
            if revision is None or p.revision in (revision, revision.removeprefix("r"))
        ]
        ready = [p for p in pods if p.state == PodState.RUNNING]
        if not ready:
            which = f" of revision {revision}" if revision else ""
            states = ", ".join(f"{p.pod_id} {p.state}" for p in pods) or "none"
            raise Conflict(
                f"no replica{which} of {name!r} is ready to be load tested (pods: {states}); "
                f"scale it to at least 1 (PUT /v1/deployments/{name}/scale) and wait until "
                "a pod is RUNNING"
            )
        return ready[0]

    def _alive(self, pod: PodInfo) -> bool:
        return any(
            p.pod_id == pod.pod_id and p.state == PodState.RUNNING
            for p in self.backend.pods(pod.deployment)
        )

    async def _run(
        self, test: LoadTest, pod: PodInfo, url: str, cfg: SearchConfig, duration_s: float
    ) -> None:
        s = self.settings
        records: list[StepRecord] = []

        def record(steps: list[Step]) -> list[StepRecord]:
            return [StepRecord(st, *_verdict(cfg, st)) for st in steps]

        async def on_step(number: int, rate: float, steps: list[Step]) -> None:
            nonlocal records
            records = record(steps)
            if not self._alive(pod):
                raise LoadTestFailed(
                    f"pod {pod.pod_id} stopped during the load test; its results so far are "
                    "kept, start again on a running replica"
                )
            await asyncio.to_thread(self.store.progress, test.id, number, rate, records)

        connector = aiohttp.TCPConnector(limit=s.max_in_flight)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                infer_url, body = await prepare(
                    session, url, pod.deployment, timeout_s=s.probe_timeout_s
                )
                runner = StepRunner(
                    session,
                    infer_url,
                    body,
                    call_timeout_s=s.call_timeout_s,
                    max_in_flight=s.max_in_flight,
                )
                steps, reason = await search(
                    cfg, lambda rate: runner.run(rate, duration_s), on_step
                )
            await self._finish(test, cfg, steps, reason)
        except LoadTestFailed as exc:
            await self._end(test.id, LoadTestState.FAILED, records, error=str(exc))
        except asyncio.CancelledError:
            await self._end(test.id, LoadTestState.CANCELLED, records, error=INTERRUPTED)
            raise
        except Exception as exc:  # recorded, so the state never stays RUNNING
            log.exception("load test failed", extra={"deployment": test.deployment})
            await self._end(
                test.id, LoadTestState.FAILED, records, error=f"{type(exc).__name__}: {exc}"
            )

    async def _finish(
        self, test: LoadTest, cfg: SearchConfig, steps: list[Step], reason: StopReason
    ) -> None:
        records = [StepRecord(st, *_verdict(cfg, st)) for st in steps]
        result = recommend(cfg, steps, self.settings.autoscale_utilisation)
        if result is None:
            last = records[-1].reason if records else "no step ran"
            await self._end(
                test.id,
                LoadTestState.FAILED,
                records,
                stop_reason=reason,
                error=(
                    f"one replica of {test.deployment!r} did not meet the target even at "
                    f"{cfg.min_rps:g} calls/s ({last}); raise latency_target_ms or give it "
                    "more resources"
                ),
            )
            return
        await self._end(test.id, LoadTestState.DONE, records, result=result, stop_reason=reason)
        log.info(
            "load test done",
            extra={"deployment": test.deployment, "max_rate_rps": result.max_rate_rps},
        )

    async def _end(
        self,
        test_id: int,
        state: LoadTestState,
        records: list[StepRecord],
        *,
        result: Recommendation | None = None,
        stop_reason: StopReason | None = None,
        error: str | None = None,
    ) -> None:
        await asyncio.to_thread(
            self.store.finish,
            test_id,
            state,
            steps=records,
            result=result,
            stop_reason=stop_reason,
            error=error,
        )


def _verdict(cfg: SearchConfig, step: Step) -> tuple[bool, str]:
    v = verdict(cfg, step)
    return v.passed, v.reason
