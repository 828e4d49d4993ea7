"""Integration: deploy the iris model through the API and run it as real local pods.

Real parts only: the registry process, Triton (aimp-triton-pod), the sidecar
process, SQLite and an RSA key set served over HTTP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]])


@asynccontextmanager
async def deploy_control(
    settings: DeployControlSettings, keys: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The deploy-control app in-process, lifespan included (start: restore; end: stop pods)."""
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
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


async def registry_instance(registry_url: str, service: str) -> Instance | None:
    client = EurekaClient(registry_url, timeout_s=2)
    try:
        found = [i for i in await client.applications() if i.app == service.upper()]
    finally:
        await client.aclose()
    return found[0] if found else None


def pod_family(pods: list[dict[str, Any]]) -> list[psutil.Process]:
    """Every live process of the pods: sidecars, Triton pods and Triton's children."""
    family: list[psutil.Process] = []
    for pod in pods:
        for proc in pod["processes"]:
            try:
                leader = psutil.Process(proc["pid"])
                family += [leader, *leader.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    return family


def infer(url: str, model: str, token: str) -> tuple[np.ndarray, np.ndarray]:
    client = triton_http.InferenceServerClient(url)
    tensor = triton_http.InferInput("input", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    result = client.infer(model, [tensor], headers={"Authorization": f"Bearer {token}"})
    return result.as_numpy("probabilities"), result.as_numpy("label")


async def test_deploy_call_crash_and_delete(
    registry_url: str,
    aimp_home: Path,
    dc_keys: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model deployed on Triton answers like predict_proba through its sidecar, survives a
    crash of Triton, and DELETE leaves no process alive (restoring after a deploy-control
    restart is tested on the faster Java runtime in test_runtimes_integration)."""
    # Inherited by the sidecars deploy-control starts: faster status changes and drain.
    monkeypatch.setenv("AIMP_SIDECAR_READY_POLL_INTERVAL_S", "0.2")
    monkeypatch.setenv("AIMP_SIDECAR_DRAIN_GRACE_S", "0.2")
    model_file = train_iris(tmp_path / "iris")
    expected = joblib.load(model_file).predict_proba(ROWS)
    name = f"iris-{uuid.uuid4().hex[:6]}"
    settings = DeployControlSettings(
        home=aimp_home,
        database_url=None,
        registry_url=registry_url,
        jwks_url=dc_keys.jwks_url,
        token_issuer=dc_keys.issuer,
        supervise_interval_s=0.2,
        restart_backoff_initial_s=0.2,  # the crash below is restarted without a 1 s pause
    )
    operator = {"Authorization": f"Bearer {dc_keys.mint(['operator'])}"}
    invoker = dc_keys.mint([f"invoke:{name}"])

    async with deploy_control(settings, dc_keys) as api:
        body = {"name": name, "model_file": str(model_file), "framework": "sklearn"}
        created = await api.post("/v1/deployments", json=body, headers=operator)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == f"/v1/deployments/{name}"
        assert [p["state"] for p in created.json()["pods"]] == ["STARTING"]
        again = await api.post("/v1/deployments", json=body, headers=operator)
        assert again.status_code == 200
        other = {**body, "model_file": str(model_file.parent / "schema.json")}
        clash = await api.post("/v1/deployments", json=other, headers=operator)
        assert clash.status_code == 409 and "model_file" in clash.json()["detail"]

        async def pod() -> dict[str, Any]:
            resp = await api.get(f"/v1/deployments/{name}", headers=operator)
            return dict(resp.json()["pods"][0])

        async def running() -> dict[str, Any] | None:
            p = await pod()
            return p if p["state"] == "RUNNING" else None

        async def up() -> Instance | None:
            inst = await registry_instance(registry_url, name)
            return inst if inst is not None and inst.status == "UP" else None

        first = await wait_for("pod RUNNING", running, 60)
        inst = await wait_for("registry UP", up, 10)
        assert inst.base_url == first["url"] and inst.metadata["aimp.model"] == name
        proba, label = await asyncio.to_thread(infer, f"{inst.ip}:{inst.port}", name, invoker)
        np.testing.assert_allclose(proba, expected, atol=1e-6)
        assert label[:, 0].tolist() == [0, 1, 2]

        # Triton dies: the supervisor restarts it and the pod answers again.
        triton_pid = next(p["pid"] for p in first["processes"] if p["role"] == "triton")
        os.killpg(triton_pid, signal.SIGKILL)

        async def restarted() -> dict[str, Any] | None:
            p = await pod()
            return p if p["restarts"] >= 1 and p["state"] == "RUNNING" else None

        second = await wait_for("pod restarted", restarted, 60)
        assert "triton exited with code -9" in second["last_error"]
        await wait_for("registry UP again", up, 10)
        proba, _ = await asyncio.to_thread(infer, f"{inst.ip}:{inst.port}", name, invoker)
        np.testing.assert_allclose(proba, expected, atol=1e-6)
        family = pod_family([second])
        assert len(family) >= 3  # sidecar, aimp-triton-pod, tritonserver (+ stubs)
        # DELETE stops Triton's whole process group after the sidecar left the registry.
        deleted = await api.delete(f"/v1/deployments/{name}", headers=operator)
        assert deleted.status_code == 204
        _gone, alive = psutil.wait_procs(family, timeout=5)
        assert not alive, alive
        assert (await api.get(f"/v1/deployments/{name}", headers=operator)).status_code == 404
        assert (await api.get("/v1/pods", headers=operator)).json() == {"pods": []}
        assert await registry_instance(registry_url, name) is None
        assert list(settings.pod_pid_dir.glob("*.pid")) == []
