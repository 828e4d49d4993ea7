"""Real processes for routing tests and benchmarks: gateway, sidecars, pods, load.

Everything here starts real programs on free loopback ports: ``aimp-gateway``,
``aimp-sidecar`` in front of the C++ (or Java) inference pod serving the iris
demo model, and an open-loop load generator (fixed rate, bounded count and
time, one aiohttp session). Used by ``tests/routing`` and ``bench/routing.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

from aimp_core.net import free_port, wait_http_ok
from aimp_core.registry_client import EurekaClient

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CPP_POD = REPO / "inference" / "cpp" / "build" / "aimp-cpp-pod"
JAVA_POD = REPO / "inference" / "java" / "build" / "aimp-java-pod"
CLIENT_ID = "routing-load"
#: One iris row, as the Open Inference Protocol's JSON (what the load sends).
INFER_BODY = json.dumps(
    {
        "inputs": [
            {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
).encode()


def pod_runtime() -> tuple[Path, str] | None:
    """The fastest-starting native pod that is built: C++ (~10 ms), else Java (~0.3 s)."""
    for binary, runtime in ((CPP_POD, "cpp"), (JAVA_POD, "java")):
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary, runtime
    return None


def export_iris(out_dir: Path) -> Path:
    """Train the iris demo model and export it to the portable JSON the native pods read."""
    from aimp_inference.demo import train_iris
    from aimp_inference.export import export_file

    out_dir.mkdir(parents=True, exist_ok=True)
    return export_file(train_iris(out_dir), out_dir / "iris.json")


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes], *, timeout_s: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL (only this process, which we started)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- the gateway ----------------------------------------------------------------------


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    home: Path
    client_secret: str
    admin_password: str

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    def token(self) -> str:
        resp = httpx.post(
            self.url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, self.client_secret),
            timeout=10,
        )
        resp.raise_for_status()
        return str(resp.json()["access_token"])

    def admin_headers(self) -> dict[str, str]:
        resp = httpx.post(
            self.url + "/oauth/token",
            data={"grant_type": "password", "username": "admin", "password": self.admin_password},
            timeout=10,
        )
        resp.raise_for_status()
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` in /metrics that carry ``labels`` (0 if none)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(self.url + "/metrics", timeout=10).text
        return sum(
            float(sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def stop(self) -> None:
        stop(self.proc)


def start_gateway(
    home: Path, *, registry_url: str, redis_url: str, kafka_bootstrap: str, **extra: str
) -> Gateway:
    """The real ``aimp-gateway`` process with one invoker client; returns once it is ready."""
    home.mkdir(parents=True, exist_ok=True)
    secret, password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    creds = home / "credentials.json"
    creds.write_text(
        json.dumps(
            {
                "admin": {"username": "admin", "password": password},
                "clients": [
                    {"client_id": CLIENT_ID, "client_secret": secret, "roles": ["invoker"]}
                ],
            }
        )
    )
    creds.chmod(0o600)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AIMP_HOME": str(home),
        "AIMP_GATEWAY_PORT": str(port),
        "AIMP_REGISTRY_URL": registry_url,
        "AIMP_REDIS_URL": redis_url,
        "AIMP_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AIMP_TOKEN_ISSUER": url,
        "AIMP_GATEWAY_INSTANCE_HEADER": "true",
        "AIMP_LOG_LEVEL": "WARNING",
        **extra,
    }
    log = home / "gateway.log"
    proc = spawn([str(BIN / "aimp-gateway")], env, log)
    try:
        wait_http_ok(url + "/readyz", timeout_s=30)
    except TimeoutError:
        stop(proc)
        raise RuntimeError(f"the gateway did not become ready:\n{tail(log)}") from None
    return Gateway(proc, url, port, home, secret, password)


# -- pods behind sidecars ---------------------------------------------------------------


@dataclass
class Replica:
    """One inference pod and the sidecar in front of it (the registry's instance)."""

    service: str
    instance_id: str
    pod: subprocess.Popen[bytes]
    sidecar: subprocess.Popen[bytes]
    pod_port: int
    sidecar_port: int
    logs: Path

    @property
    def pod_url(self) -> str:
        return f"http://127.0.0.1:{self.pod_port}"

    @property
    def sidecar_url(self) -> str:
        return f"http://127.0.0.1:{self.sidecar_port}"

    def explain(self) -> str:
        """Why this replica may not be UP: its processes' state and log tails."""
        out = []
        for name, proc in (("pod", self.pod), ("sidecar", self.sidecar)):
            log = self.logs / f"{self.instance_id}.{name}.log"
            state = "running" if proc.poll() is None else f"exited {proc.returncode}"
            out.append(f"--- {name} {self.instance_id} ({state})\n{tail(log, 15)}")
        return "\n".join(out)

    def kill9(self) -> None:
        """Both processes die at once, without a word to anyone."""
        for proc in (self.sidecar, self.pod):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in (self.sidecar, self.pod):
            proc.wait(timeout=10)

    def sigterm_sidecar(self) -> None:
        if self.sidecar.poll() is None:
            self.sidecar.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Sidecar first (OUT_OF_SERVICE, grace, drain, deregister), then the pod."""
        stop(self.sidecar, timeout_s=30)
        stop(self.pod)


@dataclass
class PodFactory:
    """Starts replicas of one model behind sidecars that register in ``registry_url``."""

    model_file: Path
    registry_url: str
    gateway: Gateway
    logs: Path
    sidecar_env: dict[str, str] = field(default_factory=dict)
    started: list[Replica] = field(default_factory=list)
    _count: int = 0

    def start(self, service: str) -> Replica:
        runtime = pod_runtime()
        if runtime is None:
            raise RuntimeError("no native pod is built; run inference/cpp/build.sh")
        binary, kind = runtime
        self._count += 1
        pod_port, sidecar_port = free_port(), free_port()
        instance_id = f"{service}-{self._count}-{sidecar_port}"
        pod = spawn(
            [str(binary), "--model-file", str(self.model_file), "--name", service,
             "--port", str(pod_port)],
            dict(os.environ),
            self.logs / f"{instance_id}.pod.log",
        )  # fmt: skip
        env = {
            **os.environ,
            "AIMP_HOME": str(self.logs / "sidecar-home"),
            "AIMP_REGISTRY_URL": self.registry_url,
            "AIMP_JWKS_URL": self.gateway.jwks_url,
            "AIMP_TOKEN_ISSUER": self.gateway.url,
            "AIMP_SIDECAR_PORT": str(sidecar_port),
            "AIMP_SIDECAR_SERVICE": service,
            "AIMP_SIDECAR_INSTANCE_ID": instance_id,
            "AIMP_SIDECAR_UPSTREAM_URL": f"http://127.0.0.1:{pod_port}",
            "AIMP_SIDECAR_RUNTIME": kind,
            "AIMP_SIDECAR_READY_POLL_INTERVAL_S": "0.1",
            "AIMP_LOG_LEVEL": "WARNING",
            **self.sidecar_env,
        }
        sidecar = spawn([str(BIN / "aimp-sidecar")], env, self.logs / f"{instance_id}.sidecar.log")
        replica = Replica(service, instance_id, pod, sidecar, pod_port, sidecar_port, self.logs)
        self.started.append(replica)
        return replica

    def stop_all(self) -> None:
        for replica in self.started:
            for proc in (replica.sidecar, replica.pod):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)


# -- watching the registry -----------------------------------------------------------------


class RegistryWatch:
    """Follows the registry's change stream and notes when each instance turns UP or leaves."""

    def __init__(self, registry_url: str) -> None:
        self.client = EurekaClient(registry_url, timeout_s=5)
        self.status: dict[str, str] = {}
        self.up_at: dict[str, float] = {}
        self.left_up_at: dict[str, float] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for event in self.client.watch(read_timeout_s=60):
            now = time.perf_counter()
            changed = event.instances if event.kind == "snapshot" else (event.instance,)
            for inst in changed:
                if inst is None:
                    continue
                before = self.status.get(inst.instance_id)
                after = "GONE" if event.action == "DELETED" else inst.status
                self.status[inst.instance_id] = after
                if after == "UP" and before != "UP":
                    self.up_at[inst.instance_id] = now
                if before == "UP" and after != "UP":
                    self.left_up_at[inst.instance_id] = now
            self._ready.set()

    async def __aenter__(self) -> RegistryWatch:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    async def wait_up(self, instance_ids: list[str], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(self.status.get(i) == "UP" for i in instance_ids):
            if time.monotonic() > deadline:
                states = {i: self.status.get(i) for i in instance_ids}
                raise TimeoutError(f"instances not UP within {timeout_s} s: {states}")
            await asyncio.sleep(0.01)

    async def wait_gone(self, instance_id: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.status.get(instance_id) not in ("GONE", None):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{instance_id} still registered after {timeout_s} s")
            await asyncio.sleep(0.01)


# -- load ---------------------------------------------------------------------------------


@dataclass
class Call:
    """One request of the load: when it went out and came back, and who answered."""

    start: float
    end: float = 0.0
    status: int = 0
    instance: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Load:
    """Open-loop load at a fixed rate for a bounded time, at most ``max_in_flight`` at once.

    Request i is due at ``t0 + i / rate``; it is sent then unless ``max_in_flight``
    calls are already out (then it waits: ``late`` counts those, a sign the system
    or this generator could not keep up).
    """

    url: str
    headers: dict[str, str]
    rate_per_s: float
    body: bytes = INFER_BODY
    max_in_flight: int = 64
    timeout_s: float = 10.0
    calls: list[Call] = field(default_factory=list)
    late: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self._stop.set()

    async def run(self, max_duration_s: float) -> list[Call]:
        gate = asyncio.Semaphore(self.max_in_flight)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = aiohttp.TCPConnector(limit=self.max_in_flight, keepalive_timeout=30)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            tasks: list[asyncio.Task[None]] = []
            t0 = time.perf_counter()
            count = int(max_duration_s * self.rate_per_s)
            for i in range(count):
                delay = t0 + i / self.rate_per_s - time.perf_counter()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                if self._stop.is_set():
                    break
                if gate.locked():
                    self.late += 1
                await gate.acquire()
                tasks.append(asyncio.create_task(self._one(http, gate)))
            await asyncio.gather(*tasks)
        return self.calls

    async def _one(self, http: aiohttp.ClientSession, gate: asyncio.Semaphore) -> None:
        call = Call(time.perf_counter())
        self.calls.append(call)
        try:
            async with http.post(self.url, data=self.body, headers=self.headers) as resp:
                await resp.read()
                call.status = resp.status
                call.instance = resp.headers.get("x-aimp-instance", "")
                if resp.status != 200:
                    call.error = (await resp.text())[:200]
        except (aiohttp.ClientError, TimeoutError) as exc:
            call.error = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            call.end = time.perf_counter()
            gate.release()


def failures(calls: list[Call]) -> list[Call]:
    return [c for c in calls if not c.ok]


@contextlib.contextmanager
def replicas_stopped(factory: PodFactory) -> Iterator[PodFactory]:
    try:
        yield factory
    finally:
        factory.stop_all()
