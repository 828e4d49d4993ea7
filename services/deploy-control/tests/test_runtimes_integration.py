"""Integration: native runtimes (Java, C++), scaling and a rolling restart under load.

Real parts only: the registry process, the Java and C++ pods built from
inference/, the sidecar process, the model exporter subprocess, SQLite and an RSA
key set served over HTTP.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import psutil
import pytest
import tritonclient.http as triton_http

from aimp_core.auth import JwksVerifier
from aimp_core.registry_client import EurekaClient, Instance
from aimp_deploy_control.app import create_app
from aimp_deploy_control.settings import DeployControlSettings
from aimp_inference.demo import train_iris

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]])
BODY = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0].tolist()}]
}


def _build(runtime: str) -> Path:
    """Build a native pod with its build.sh; skip when the script says a toolchain is missing."""
    script = REPO / "inference" / runtime / "build.sh"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=600, check=False)
    if done.returncode == 3:
        pytest.skip(f"the {runtime} pod cannot be built here: {done.stderr.strip()}")
    if done.returncode != 0:
        pytest.fail(f"{script} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return REPO / "inference" / runtime / "build" / f"aimp-{runtime}-pod"


@pytest.fixture(scope="session")
def java_pod() -> Path:
    return _build("java")


@pytest.fixture(scope="session")
def cpp_pod() -> Path:
    built = REPO / "inference" / "cpp" / "build" / "aimp-cpp-pod"
    return built if built.is_file() else _build("cpp")


@pytest.fixture
def fast_sidecars(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inherited by the sidecars deploy-control starts: quick status changes, short drain."""
    monkeypatch.setenv("AIMP_SIDECAR_READY_POLL_INTERVAL_S", "0.1")
    # Callers below refresh their view every 100 ms; the grace must outlast that.
    monkeypatch.setenv("AIMP_SIDECAR_DRAIN_GRACE_S", "0.3")


def settings_for(home: Path, registry_url: str, keys: Any, **native: str) -> DeployControlSettings:
    return DeployControlSettings(
        home=home,
        database_url=None,
        registry_url=registry_url,
        jwks_url=keys.jwks_url,
        token_issuer=keys.issuer,
        supervise_interval_s=0.1,
        **native,
    )


@asynccontextmanager
async def deploy_control(
    settings: DeployControlSettings, keys: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, verifier=JwksVerifier(keys.jwks_url, issuer=keys.issuer))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dc", timeout=60) as http:
            yield http


async def wait_for(what: str, probe: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


async def instances(registry_url: str, service: str) -> list[Instance]:
    client = EurekaClient(registry_url, timeout_s=2)
    try:
        return [i for i in await client.applications() if i.app == service.upper()]
    finally:
        await client.aclose()


async def up_urls(registry_url: str, service: str, count: int) -> list[str] | None:
    found = sorted(i.base_url for i in await instances(registry_url, service) if i.status == "UP")
    return found if len(found) == count else None


def infer_json(base_url: str, model: str, token: str) -> np.ndarray:
    """tritonclient against the sidecar, JSON tensors both ways (binary_data=False)."""
    client = triton_http.InferenceServerClient(base_url.removeprefix("http://"))
    tensor = triton_http.InferInput("input", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS, binary_data=False)
    outputs = [triton_http.InferRequestedOutput("probabilities", binary_data=False)]
    result = client.infer(
        model, [tensor], outputs=outputs, headers={"Authorization": f"Bearer {token}"}
    )
    return result.as_numpy("probabilities")


def family(pods: list[dict[str, Any]]) -> list[psutil.Process]:
    procs = []
    for pod in pods:
        for proc in pod["processes"]:
            with suppress(psutil.NoSuchProcess):
                procs.append(psutil.Process(proc["pid"]))
    return procs


@dataclass
class Caller:
    """Calls the service through its sidecars, round robin over the registry's UP instances
    (refreshed every 100 ms), retrying once on a refused connection as the gateway does."""

    registry_url: str
    service: str
    token: str
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        registry = EurekaClient(self.registry_url, timeout_s=2)
        headers = {"Authorization": f"Bearer {self.token}"}
        path = f"/v2/models/{self.service}/infer"
        urls: list[str] = []
        refreshed = 0.0
        async with httpx.AsyncClient(timeout=5, headers=headers) as http:
            while not stop.is_set():
                if time.monotonic() - refreshed >= 0.1:
                    urls = [
                        i.base_url
                        for i in await registry.applications()
                        if i.app == self.service.upper() and i.status == "UP"
                    ]
                    refreshed = time.monotonic()
                if not urls:
                    self.failures.append("no UP instance in the registry")
                    await asyncio.sleep(0.05)
                    continue
                url = urls[self.calls % len(urls)]
                self.calls += 1
                self.seen.add(url)
                await self._call(http, url + path)
                # ~50 calls/s: a call every 20 ms hits every phase of the rollout (the
                # drain grace alone is 300 ms) and leaves a 2-core machine's CPU to the
                # processes being started.
                await asyncio.sleep(0.02)
        await registry.aclose()

    async def _call(self, http: httpx.AsyncClient, url: str) -> None:
        for attempt in (1, 2):
            try:
                resp = await http.post(url, json=BODY)
            except httpx.ConnectError as exc:
                if attempt == 2:
                    self.failures.append(f"{url}: {exc!r} twice")
                continue
            if resp.status_code != 200:
                self.failures.append(f"{url}: {resp.status_code} {resp.text[:200]}")
            return


async def test_java_runtime_scale_rolling_restart_and_restore(
    registry_url: str,
    aimp_home: Path,
    dc_keys: Any,
    tmp_path: Path,
    java_pod: Path,
    fast_sidecars: None,
) -> None:
    """A model on runtime java answers like predict_proba; scaling 1 -> 2 shows in the registry;
    a rolling restart of 2 replicas under load fails no call and replaces both; a restarted
    deploy-control restores both; scaling to 0 stops them and keeps the deployment."""
    model_file = train_iris(tmp_path / "iris")
    expected = joblib.load(model_file).predict_proba(ROWS)
    name = f"iris-java-{uuid.uuid4().hex[:6]}"
    settings = settings_for(
        aimp_home, registry_url, dc_keys, deploy_control_java_pod_command=str(java_pod)
    )
    op = {"Authorization": f"Bearer {dc_keys.mint(['operator'])}"}
    token = dc_keys.mint([f"invoke:{name}"])
    async with deploy_control(settings, dc_keys) as api:
        body = {"name": name, "model_file": str(model_file), "runtime": "java"}
        created = await api.post("/v1/deployments", json=body, headers=op)
        assert created.status_code == 201, created.text
        assert created.json()["runtime"] == "java" and created.json()["framework"] == "sklearn"
        exported = aimp_home / "deployments" / name / "r1" / "model.json"  # per revision
        assert exported.is_file() and not (model_file.parent / "model.json").exists()
        [url] = await wait_for("one UP instance", lambda: up_urls(registry_url, name, 1), 20)
        [inst] = await instances(registry_url, name)
        assert inst.metadata["aimp.runtime"] == "java" and inst.metadata["aimp.model"] == name
        proba = await asyncio.to_thread(infer_json, url, name, token)
        np.testing.assert_allclose(proba, expected, atol=1e-6)

        scaled = await api.put(f"/v1/deployments/{name}/scale", json={"replicas": 2}, headers=op)
        assert scaled.status_code == 200 and scaled.json()["replicas"] == 2, scaled.text
        before = await wait_for("two UP instances", lambda: up_urls(registry_url, name, 2), 20)

        async def scale() -> dict[str, Any]:
            got = await api.get(f"/v1/deployments/{name}/scale", headers=op)
            return dict(got.json())

        assert await wait_for("2 ready", lambda: _eq(scale, {"replicas": 2, "ready": 2}), 10)
        old_pods = (await api.get(f"/v1/deployments/{name}", headers=op)).json()["pods"]

        caller = Caller(registry_url, name, token)
        stop = asyncio.Event()
        load = asyncio.create_task(caller.run(stop))
        await asyncio.sleep(0.2)
        started = await api.post(f"/v1/deployments/{name}/restart", headers=op)
        assert started.status_code == 202, started.text
        assert started.json()["state"] == "running" and started.json()["total"] == 2
        again = await api.post(f"/v1/deployments/{name}/restart", headers=op)
        assert again.status_code == 409 and "rolling restart is running" in again.json()["detail"]
        busy = await api.put(f"/v1/deployments/{name}/scale", json={"replicas": 3}, headers=op)
        assert busy.status_code == 409 and "rolling restart" in busy.json()["detail"]

        async def finished() -> dict[str, Any] | None:
            view = (await api.get(f"/v1/deployments/{name}", headers=op)).json()
            return view if view["rollout"]["state"] != "running" else None

        done = await wait_for("the rollout to end", finished, 40)
        await asyncio.sleep(0.2)  # keep calling the replacements for a moment
        stop.set()
        await load
        assert done["rollout"]["state"] == "succeeded", done["rollout"]
        assert done["rollout"]["replaced"] == 2 and done["rollout"]["error"] is None
        assert caller.failures == [], caller.failures[:5]
        assert caller.calls > 100, caller.calls
        after = await wait_for("two UP instances", lambda: up_urls(registry_url, name, 2), 10)
        assert not set(after) & set(before), "every replica got a new sidecar"
        assert set(before) <= caller.seen and caller.seen & set(after), caller.seen
        assert not [p for p in family(old_pods) if p.is_running()]

        new_pods = done["pods"]
    # deploy-control stopped: every pod process is gone and the registry forgot the pods.
    _gone, alive = psutil.wait_procs(family(new_pods), timeout=5)
    assert not alive, alive
    assert await instances(registry_url, name) == []
    exported_at = exported.stat().st_mtime_ns

    async with deploy_control(settings, dc_keys) as api:
        # Restored from SQLite with its 2 replicas; the unchanged model is not exported again.
        await wait_for("two restored UP", lambda: up_urls(registry_url, name, 2), 20)
        assert exported.stat().st_mtime_ns == exported_at
        restored = (await api.get(f"/v1/deployments/{name}", headers=op)).json()["pods"]
        zero = await api.put(f"/v1/deployments/{name}/scale", json={"replicas": 0}, headers=op)
        assert zero.json() == {"replicas": 0, "ready": 0}
        assert await instances(registry_url, name) == []
        _gone, alive = psutil.wait_procs(family(restored), timeout=5)
        assert not alive
        kept = (await api.get(f"/v1/deployments/{name}", headers=op)).json()
        assert kept["replicas"] == 0 and kept["pods"] == [] and kept["runtime"] == "java"
        assert (await api.delete(f"/v1/deployments/{name}", headers=op)).status_code == 204
        assert not exported.parent.exists()
        assert list(settings.pod_pid_dir.glob("*.pid")) == []


async def _eq(probe: Any, want: dict[str, Any]) -> bool:
    return bool(await probe() == want)


async def test_cpp_runtime_answers_like_scikit_learn(
    registry_url: str,
    aimp_home: Path,
    dc_keys: Any,
    tmp_path: Path,
    cpp_pod: Path,
    fast_sidecars: None,
) -> None:
    """A model on runtime cpp registers with aimp.runtime=cpp and matches predict_proba."""
    model_file = train_iris(tmp_path / "iris")
    expected = joblib.load(model_file).predict_proba(ROWS)
    name = f"iris-cpp-{uuid.uuid4().hex[:6]}"
    settings = settings_for(
        aimp_home, registry_url, dc_keys, deploy_control_cpp_pod_command=str(cpp_pod)
    )
    op = {"Authorization": f"Bearer {dc_keys.mint(['operator'])}"}
    token = dc_keys.mint([f"invoke:{name}"])
    async with deploy_control(settings, dc_keys) as api:
        runtimes = (await api.get("/v1/runtimes", headers=op)).json()["runtimes"]
        assert {r["name"]: r["available"] for r in runtimes}["cpp"] is True
        body = {"name": name, "model_file": str(model_file), "runtime": "cpp"}
        created = await api.post("/v1/deployments", json=body, headers=op)
        assert created.status_code == 201, created.text
        assert [p["processes"][0]["role"] for p in created.json()["pods"]] == ["cpp"]
        [url] = await wait_for("one UP instance", lambda: up_urls(registry_url, name, 1), 20)
        [inst] = await instances(registry_url, name)
        assert inst.metadata["aimp.runtime"] == "cpp"
        proba = await asyncio.to_thread(infer_json, url, name, token)
        np.testing.assert_allclose(proba, expected, atol=1e-6)
        pods = created.json()["pods"]
    _gone, alive = psutil.wait_procs(family(pods), timeout=5)
    assert not alive
    assert await instances(registry_url, name) == []
