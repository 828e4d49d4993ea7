"""A revision's concurrency, environment and scale bounds through the real API: deploy-control
served by uvicorn runs a local pod of real processes (a small OIP server standing in for
Triton, behind the real sidecar registering in the real registry)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import KeyServer
from .dc_harness import Api, new_home, oip_pod, serve_pods, wait_for


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, registry_url: str, dc_keys: KeyServer
) -> Iterator[Api]:
    """deploy-control under uvicorn whose pods hold an inference call until $HOLD_FILE exists."""
    home = new_home(tmp_path_factory, "spec")
    with serve_pods(home, registry_url, dc_keys, oip_pod("hold")) as api:
        yield api


@dataclass(frozen=True)
class Deployed:
    name: str
    body: dict[str, Any]
    hold: Path


@pytest.fixture(scope="module")
def deployed(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """A deployment of one pod with concurrency 1, no queue, env and scale bounds 1..2,
    RUNNING."""
    tmp = tmp_path_factory.mktemp("spec-model")
    model = tmp / "model.joblib"
    model.write_bytes(b"the fake pod does not read it")
    name = f"spec-{uuid.uuid4().hex[:6]}"
    hold = tmp / "release"
    body = {
        "name": name,
        "model_file": str(model),
        "framework": "sklearn",
        "concurrency": 1,
        "queue_size": 0,
        "min_scale": 1,
        "max_scale": 2,
        "env": {"FOO": "bar", "HOLD_FILE": str(hold), "API_TOKEN": "t0ps3cret"},
    }
    resp = api.http.post("/v1/deployments", json=body, headers=api.headers)
    assert resp.status_code == 201, resp.text
    wait_for(
        "the pod to run", lambda: True if api.view(name)["pods"][0]["state"] == "RUNNING" else None
    )
    return Deployed(name, body, hold)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_the_revision_view_shows_the_settings_with_secrets_redacted(
    api: Api, deployed: Deployed
) -> None:
    """GET shows concurrency, queue, bounds, initial scale and env; API_TOKEN's value is not
    shown."""
    (rev,) = api.view(deployed.name)["revisions"]
    assert (rev["concurrency"], rev["queue_size"]) == (1, 0)
    assert (rev["min_scale"], rev["max_scale"], rev["initial_scale"]) == (1, 2, 1)
    assert rev["env"]["FOO"] == "bar" and rev["env"]["API_TOKEN"] == "<redacted>"
    assert "t0ps3cret" not in api.http.get("/v1/deployments", headers=api.headers).text


def test_the_processes_get_the_env_and_the_sidecar_the_concurrency(
    api: Api, deployed: Deployed
) -> None:
    """The server process has FOO=bar; the sidecar process has the concurrency settings."""
    procs = {p["role"]: p for p in api.view(deployed.name)["pods"][0]["processes"]}
    server = _environ(procs["triton"]["pid"])
    sidecar = _environ(procs["sidecar"]["pid"])
    assert server["FOO"] == "bar" and "AIMP_SIDECAR_CONCURRENCY_LIMIT" not in server
    assert sidecar["AIMP_SIDECAR_CONCURRENCY_LIMIT"] == "1"
    assert sidecar["AIMP_SIDECAR_QUEUE_SIZE"] == "0"
    assert "FOO" not in sidecar


def test_a_second_concurrent_call_is_refused_by_the_sidecar(
    api: Api, deployed: Deployed, dc_keys: Any
) -> None:
    """With concurrency 1 and no queue, a call while another runs gets 503 at capacity; the
    first still succeeds."""
    pod = api.view(deployed.name)["pods"][0]
    log_file = Path(next(p for p in pod["processes"] if p["role"] == "triton")["log_file"])
    infer = f"{pod['url']}/v2/models/{deployed.name}/infer"
    headers = {"Authorization": f"Bearer {dc_keys.mint(['invoker'])}"}
    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]}
    first: list[int] = []

    def call() -> None:
        first.append(httpx.post(infer, json=body, headers=headers, timeout=30).status_code)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    try:
        wait_for(
            "the first call to reach the server",
            lambda: True if "infer started" in log_file.read_text() else None,
        )
        second = httpx.post(infer, json=body, headers=headers, timeout=10)
        assert second.status_code == 503, second.text
        assert "at capacity (1 running, 0 queued)" in second.text, second.text
    finally:
        deployed.hold.touch()
        caller.join(30)
    assert first == [200]


def test_scale_requests_outside_the_bounds_are_refused(api: Api, deployed: Deployed) -> None:
    """Scaling below min_scale or above max_scale is a 400 naming the bounds, for the
    deployment and for the revision; an unknown revision is a 404."""
    for path in (
        f"/v1/deployments/{deployed.name}/scale",
        f"/v1/deployments/{deployed.name}/revisions/r1/scale",
    ):
        for replicas in (0, 3):
            resp = api.http.put(path, json={"replicas": replicas}, headers=api.headers)
            assert resp.status_code == 400, resp.text
            assert "scales between 1 and 2 pods" in resp.json()["detail"]
    ok = api.http.put(
        f"/v1/deployments/{deployed.name}/revisions/r1/scale",
        json={"replicas": 1},
        headers=api.headers,
    )
    assert ok.status_code == 200 and ok.json()["replicas"] == 1
    got = api.http.get(f"/v1/deployments/{deployed.name}/revisions/r1/scale", headers=api.headers)
    assert got.json() == {"replicas": 1, "ready": 1}
    ghost = api.http.put(
        f"/v1/deployments/{deployed.name}/revisions/r9/scale",
        json={"replicas": 1},
        headers=api.headers,
    )
    assert ghost.status_code == 404 and "has no revision 'r9'" in ghost.json()["detail"]


def test_a_redeploy_with_other_settings_conflicts_without_showing_values(
    api: Api, deployed: Deployed
) -> None:
    """The same body again is a 200; another env value or concurrency is a 409 naming the
    changed settings, never an env value."""
    same = api.http.post("/v1/deployments", json=deployed.body, headers=api.headers)
    assert same.status_code == 200, same.text
    env = {**deployed.body["env"], "API_TOKEN": "other-s3cret"}
    changed = {**deployed.body, "env": env, "concurrency": 2}
    resp = api.http.post("/v1/deployments", json=changed, headers=api.headers)
    assert resp.status_code == 409
    detail = resp.json()["detail"]
    assert "concurrency: 1 -> 2" in detail and "env: API_TOKEN differ" in detail
    assert "s3cret" not in detail and "t0ps3cret" not in detail
