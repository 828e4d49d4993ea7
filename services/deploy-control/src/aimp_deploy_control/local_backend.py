"""The local orchestrator: each pod is one inference server process plus one sidecar process.

The server is Triton (``aimp-triton-pod``), the C++ pod or the Java pod, by the
pod's runtime; the sidecar in front of it is the same for all three.

Every process leads its own process group (so stopping it also stops Triton's
children), writes to its own log file and has a pid file. A supervisor task
notices crashes, restarts the dead process after an exponential backoff, and
marks a pod RUNNING once its sidecar answers ready.

Each start of a pod's server is measured by phase (coldstart.py, coldstart_watch.py)
and shown as the pod's ``cold_start``; its logs are read from the files
(pod_logs.py): the last lines, or followed live.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from aimp_core.errors import AimpError, NotFound
from aimp_core.net import free_port
from aimp_deploy_control import coldstart, pod_limits, pod_logs, processes, runtimes
from aimp_deploy_control.backend import PodInfo, PodSpec, ProcessInfo
from aimp_deploy_control.coldstart import ColdStartMarks, Mark
from aimp_deploy_control.coldstart_watch import ColdStartWatcher
from aimp_deploy_control.lifecycle import PodState, restart_delay_s, transition
from aimp_deploy_control.limits import ProcessLimits
from aimp_deploy_control.observe_settings import PodObserveSettings
from aimp_deploy_control.settings import DeployControlSettings

log = logging.getLogger(__name__)

#: deploy-control's own credentials: kept out of the pods' environment.
PRIVATE_ENV = frozenset({"AIMP_DEPLOY_CONTROL_CLIENT_ID", "AIMP_DEPLOY_CONTROL_CLIENT_SECRET"})
#: A sidecar's readiness answer is local and takes about a millisecond.
READY_PROBE_TIMEOUT_S = 1.0


class PodStartFailed(AimpError):
    status, title = 500, "Pod start failed"


@dataclass
class Proc:
    """One supervised process of a pod."""

    role: str
    argv: list[str]
    env: dict[str, str]
    log_file: Path
    pid_file: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    crashes_in_row: int = 0
    exit_code: int | None = None
    #: CPU, memory and GPU limits (limits.py); the server's come from the pod's resources.
    limits: ProcessLimits = field(default_factory=ProcessLimits)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def spawn(self) -> None:
        try:
            self.popen = processes.spawn(
                self.limits.wrap(self.argv),
                env=self.limits.env(self.env),
                log_file=self.log_file,
                pid_file=self.pid_file,
            )
        except OSError as exc:
            known = runtimes.RUNTIMES.get(self.role)
            setting = known.setting if known else "AIMP_SIDECAR_COMMAND"
            raise PodStartFailed(
                f"cannot start the {self.role} process {self.argv[0]!r} ({exc.strerror}); "
                f"check {setting}"
            ) from None
        self.started_at = time.monotonic()
        self.exit_code = None

    def info(self) -> ProcessInfo:
        pid = self.popen.pid if self.popen is not None else None
        return ProcessInfo(self.role, pid, self.alive, self.restarts, str(self.log_file))


@dataclass
class LocalPod:
    spec: PodSpec
    url: str
    upstream_url: str
    server_role: str
    procs: dict[str, Proc]
    state: PodState = PodState.PENDING
    restart_at: float = 0.0
    last_error: str | None = None
    #: The latest start of its server, measured by phase.
    cold: ColdStartMarks | None = None
    #: The task probing that start's progress (coldstart_watch.py).
    watch: asyncio.Task[None] | None = None

    def move(self, target: PodState) -> None:
        previous = self.state
        self.state = transition(self.spec.pod_id, self.state, target)
        log.info("pod state", extra={"pod": self.spec.pod_id, "from": previous, "to": target})

    def info(self) -> PodInfo:
        return PodInfo(
            pod_id=self.spec.pod_id,
            deployment=self.spec.deployment,
            replica=self.spec.replica,
            runtime=self.spec.runtime,
            state=self.state,
            url=self.url,
            upstream_url=self.upstream_url,
            restarts=sum(p.restarts for p in self.procs.values()),
            last_error=self.last_error,
            processes=[p.info() for p in self.procs.values()],
            cold_start=coldstart.phases(self.cold) if self.cold is not None else None,
            revision=self.spec.revision,
        )


class LocalProcessBackend:
    """Runs pods as local processes (the default backend; Kubernetes comes later)."""

    def __init__(
        self, settings: DeployControlSettings, observe: PodObserveSettings | None = None
    ) -> None:
        self.settings = settings
        self.observe = observe or PodObserveSettings()
        self._pods: dict[str, LocalPod] = {}
        self._http = httpx.AsyncClient(timeout=READY_PROBE_TIMEOUT_S)
        self._task: asyncio.Task[None] | None = None
        self._watcher = ColdStartWatcher(settings.registry_url, self.observe)

    # -- PodBackend -----------------------------------------------------------------------

    async def start(self) -> None:
        """Stop what a previous deploy-control left running, then begin supervising."""
        stale = await asyncio.to_thread(processes.stop_stale, self.settings.pod_pid_dir)
        if stale:
            log.warning("stopped processes left by a previous run", extra={"processes": stale})
        self._task = asyncio.create_task(self._supervise(), name="pod-supervisor")

    async def start_pod(self, spec: PodSpec) -> PodInfo:
        running = [(p.spec.resources, p.procs[p.server_role].limits) for p in self._pods.values()]
        server_limits = await pod_limits.for_pod(spec.resources, running)  # may read NVML
        existing = self._pods.get(spec.pod_id)
        if existing is not None:
            return existing.info()
        pod = self._build(spec)
        pod.procs[pod.server_role].limits = server_limits
        pod.move(PodState.STARTING)
        try:
            self._spawn(pod, pod.procs.values())
        except PodStartFailed:
            await self._stop(pod)
            raise
        self._pods[spec.pod_id] = pod
        self._watch(pod)
        return pod.info()

    async def stop_pod(self, pod_id: str) -> None:
        pod = self._pods.get(pod_id)
        if pod is not None:
            await self._stop(pod)
            self._pods.pop(pod_id, None)

    def pods(self, deployment: str | None = None) -> list[PodInfo]:
        return [
            p.info()
            for p in sorted(self._pods.values(), key=lambda p: p.spec.pod_id)
            if deployment is None or p.spec.deployment == deployment
        ]

    async def remove(self, deployment: str) -> None:
        await asyncio.gather(*(self.stop_pod(p.pod_id) for p in self.pods(deployment)))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*(self.stop_pod(pod_id) for pod_id in list(self._pods)))
        await self._http.aclose()
        await self._watcher.aclose()

    # -- PodLogs ------------------------------------------------------------------------------

    async def logs(
        self,
        pod_id: str,
        *,
        sidecar: bool = False,
        tail_lines: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[bytes]:
        """The pod's server (or sidecar) log file: its last ``tail_lines`` lines (at most
        AIMP_DEPLOY_CONTROL_LOG_TAIL_MAX_LINES; that many when None), then with ``follow``
        each new line as it is written, until the pod stops or the consumer does."""
        pod = self._pods.get(pod_id)
        if pod is None:
            raise NotFound(f"no pod {pod_id!r} runs here: GET /v1/pods lists the pods")
        o = self.observe
        path = pod.procs["sidecar" if sidecar else pod.server_role].log_file
        lines = (
            o.log_tail_max_lines if tail_lines is None else min(tail_lines, o.log_tail_max_lines)
        )
        tail = await asyncio.to_thread(
            pod_logs.tail_file, path, lines, max_line_bytes=o.log_line_max_bytes
        )
        if not follow:
            yield tail.text()
            return
        if tail.lines:
            yield b"".join(line + b"\n" for line in tail.lines)
        async for line in pod_logs.follow_file(
            path,
            tail.end,
            max_line_bytes=o.log_line_max_bytes,
            poll_interval_s=o.log_follow_poll_interval_s,
            until=lambda: self._pods.get(pod_id) is not pod,
        ):
            yield line + b"\n"

    # -- building and stopping ----------------------------------------------------------

    def _build(self, spec: PodSpec) -> LocalPod:
        s = self.settings
        command = runtimes.command_of(s, spec.runtime)
        if command is None:
            raise PodStartFailed(runtimes.unavailable_reason(s, spec.runtime) or spec.runtime)
        ports = [free_port() for _ in range(runtimes.ports_needed(spec.runtime))]
        sidecar = free_port()
        upstream = f"http://127.0.0.1:{ports[0]}"
        # Pods never see deploy-control's own sign-in at the gateway.
        inherited = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        base_env = {**inherited, "AIMP_HOME": str(s.home), "PYTHONUNBUFFERED": "1"}
        server_argv = runtimes.server_argv(
            command,
            spec.runtime,
            model_file=spec.model_file,
            name=spec.deployment,
            framework=spec.framework,
            ports=ports,
        )
        sidecar_env = {
            **base_env,
            "AIMP_REGISTRY_URL": s.registry_url,
            "AIMP_JWKS_URL": s.jwks_url,
            "AIMP_TOKEN_ISSUER": s.token_issuer,
            "AIMP_SIDECAR_PORT": str(sidecar),
            "AIMP_SIDECAR_UPSTREAM_URL": upstream,
            "AIMP_SIDECAR_SERVICE": spec.deployment,
            "AIMP_SIDECAR_MODEL": spec.deployment,
            "AIMP_SIDECAR_RUNTIME": spec.runtime,
            "AIMP_SIDECAR_REVISION": spec.revision,
            **spec.sidecar_admission_env(),
        }
        server_env = {**base_env, **dict(spec.env)}

        def proc(role: str, argv: list[str], env: dict[str, str]) -> Proc:
            name = f"{spec.pod_id}-{role}"
            return Proc(
                role, argv, env, s.pod_log_dir / f"{name}.log", s.pod_pid_dir / f"{name}.pid"
            )

        # The server's role is its runtime's name (triton, cpp, java): logs and pid files
        # say which kind of process each is.
        return LocalPod(
            spec,
            url=f"http://127.0.0.1:{sidecar}",
            upstream_url=upstream,
            server_role=spec.runtime,
            procs={
                spec.runtime: proc(spec.runtime, server_argv, server_env),
                "sidecar": proc("sidecar", [*s.sidecar_command], sidecar_env),
            },
        )

    def _spawn(self, pod: LocalPod, procs: Iterable[Proc]) -> None:
        """Start ``procs``; a start of the server begins a new cold start."""
        server = pod.procs[pod.server_role]
        for proc in procs:
            if proc is server:
                pod.cold = coldstart.begin(time.monotonic(), datetime.now(UTC))
            proc.spawn()
            if proc is server and pod.cold is not None:
                pod.cold = coldstart.record(pod.cold, Mark.PROCESS_STARTED, proc.started_at)

    def _watch(self, pod: LocalPod) -> None:
        """Follow the pod's latest cold start (instead of an earlier one)."""
        if pod.watch is not None:
            pod.watch.cancel()
        pod.watch = asyncio.create_task(
            self._watcher.run(pod), name=f"cold-start-{pod.spec.pod_id}"
        )

    async def _stop(self, pod: LocalPod) -> None:
        """Sidecar first (it leaves the registry and drains), then the inference server."""
        if pod.state in (PodState.STOPPING, PodState.STOPPED):
            return
        pod.move(PodState.STOPPING)
        if pod.watch is not None:
            pod.watch.cancel()
            await asyncio.gather(pod.watch, return_exceptions=True)
        if pod.cold is not None:
            pod.cold = coldstart.abandon(pod.cold, "the pod was stopped")
        timeouts = {
            "sidecar": self.settings.sidecar_stop_timeout_s,
            pod.server_role: self.settings.pod_stop_timeout_s,
        }
        for role in ("sidecar", pod.server_role):
            proc = pod.procs[role]
            if proc.popen is not None:
                code = await processes.terminate(proc.popen, timeouts[role])
                log.info(
                    "process stopped",
                    extra={"pod": pod.spec.pod_id, "role": role, "exit_code": code},
                )
            proc.pid_file.unlink(missing_ok=True)
        pod.move(PodState.STOPPED)

    # -- supervision --------------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:
                log.exception("supervisor round failed")
            await asyncio.sleep(self.settings.supervise_interval_s)

    async def check_once(self) -> None:
        """One supervision round over every pod."""
        await asyncio.gather(*(self._check(p) for p in list(self._pods.values())))

    async def _check(self, pod: LocalPod) -> None:
        if pod.state not in (PodState.STARTING, PodState.RUNNING, PodState.CRASHED):
            return
        now = time.monotonic()
        self._record_exits(pod, now)
        if pod.state == PodState.CRASHED and now >= pod.restart_at:
            dead = [proc for proc in pod.procs.values() if not proc.alive]
            for proc in dead:
                proc.restarts += 1
            self._spawn(pod, dead)
            for proc in dead:
                log.info(
                    "process restarted",
                    extra={"pod": pod.spec.pod_id, "role": proc.role, "restarts": proc.restarts},
                )
            if any(proc is pod.procs[pod.server_role] for proc in dead):
                self._watch(pod)
            pod.move(PodState.STARTING)
        if pod.state == PodState.STARTING:
            ready = await self._ready(pod)
            if ready and pod.state == PodState.STARTING:  # a stop may have begun meanwhile
                pod.move(PodState.RUNNING)
        if pod.state == PodState.RUNNING:
            for proc in pod.procs.values():
                if now - proc.started_at >= self.settings.restart_reset_after_s:
                    proc.crashes_in_row = 0

    def _record_exits(self, pod: LocalPod, now: float) -> None:
        s = self.settings
        for proc in pod.procs.values():
            if proc.popen is None or proc.alive or proc.exit_code is not None:
                continue
            proc.exit_code = proc.popen.returncode
            processes.kill_group(proc.popen.pid, signal.SIGKILL)
            if now - proc.started_at >= s.restart_reset_after_s:
                proc.crashes_in_row = 0
            proc.crashes_in_row += 1
            delay = restart_delay_s(
                proc.crashes_in_row,
                initial_s=s.restart_backoff_initial_s,
                max_s=s.restart_backoff_max_s,
            )
            pod.last_error = f"{proc.role} exited with code {proc.exit_code}; see {proc.log_file}"
            if proc.role == pod.server_role and pod.cold is not None:
                pod.cold = coldstart.abandon(pod.cold, pod.last_error)
            log.warning(
                "process crashed",
                extra={
                    "pod": pod.spec.pod_id,
                    "role": proc.role,
                    "exit_code": proc.exit_code,
                    "restart_in_s": delay,
                },
            )
            if pod.state != PodState.CRASHED:
                pod.move(PodState.CRASHED)
                pod.restart_at = now + delay
            else:
                pod.restart_at = max(pod.restart_at, now + delay)

    async def _ready(self, pod: LocalPod) -> bool:
        if not all(p.alive for p in pod.procs.values()):
            return False
        try:
            return (await self._http.get(f"{pod.url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False
