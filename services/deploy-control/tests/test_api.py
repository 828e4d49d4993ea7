"""API tests in-process with a real key set and SQLite: auth, validation, not found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .dc_harness import bearer, in_process


@pytest.fixture
async def api(aimp_home: Path, dc_keys: Any) -> AsyncIterator[httpx.AsyncClient]:
    java = "/bin/true"
    async with in_process(
        dc_keys, home=aimp_home, database_url=None, deploy_control_java_pod_command=java
    ) as http:
        yield http


async def test_tokens_and_roles(api: httpx.AsyncClient, dc_keys: Any) -> None:
    """No token is 401; an invoker may neither read nor deploy; an operator may read."""
    assert (await api.get("/v1/deployments")).status_code == 401
    invoker = bearer(dc_keys, "invoker")
    assert (await api.get("/v1/deployments", headers=invoker)).status_code == 403
    body = {"name": "iris", "model_file": "/nope"}
    assert (await api.post("/v1/deployments", json=body, headers=invoker)).status_code == 403
    expired = {"Authorization": f"Bearer {dc_keys.mint(['admin'], ttl_s=-120)}"}
    assert (await api.get("/v1/pods", headers=expired)).status_code == 401
    reader = bearer(dc_keys, "operator")
    resp = await api.get("/v1/deployments", headers=reader)
    assert resp.status_code == 200 and resp.json() == {"deployments": []}
    assert (await api.get("/v1/pods", headers=reader)).json() == {"pods": []}


async def test_validation_errors_say_what_to_fix(
    api: httpx.AsyncClient, dc_keys: Any, tmp_path: Path
) -> None:
    """Bad names, missing files and bad replica counts are 400s naming the problem."""
    admin = bearer(dc_keys, "admin")
    model = tmp_path / "m.joblib"
    model.write_bytes(b"x")
    cases = [
        ({"name": "Iris_1", "model_file": str(model)}, "DNS label"),
        ({"name": "iris", "model_file": str(tmp_path / "gone.joblib")}, "does not exist"),
        ({"name": "iris", "model_file": str(model), "replicas": 0}, "between 1 and 8"),
        ({"name": "iris", "model_file": str(model), "runtime": "go"}, "runtime 'go' is not known"),
        ({"name": "iris", "model_file": str(model), "framework": "xgb"}, "'sklearn' (a scikit"),
        (
            {"name": "iris", "model_file": str(model), "runtime": "cpp", "framework": "onnx"},
            "runtime 'cpp' serves scikit-learn models exported to JSON; use runtime 'triton'",
        ),
        # No C++ pod configured here: the advice says how to get one.
        (
            {"name": "iris", "model_file": str(model), "runtime": "cpp"},
            "build it with `make native`",
        ),
        # The Java "pod" is /bin/true; the real exporter refuses the file before it matters.
        (
            {"name": "iris", "model_file": str(model), "runtime": "java"},
            "the export to portable JSON failed: ",
        ),
    ]
    for body, message in cases:
        resp = await api.post("/v1/deployments", json=body, headers=admin)
        assert resp.status_code == 400, resp.text
        assert message in resp.json()["detail"]
        assert resp.headers["content-type"] == "application/problem+json"
    assert (await api.get("/v1/deployments", headers=admin)).json() == {"deployments": []}


async def test_unknown_deployment_is_404(api: httpx.AsyncClient, dc_keys: Any) -> None:
    """Reading or deleting a name that was never deployed is a 404 with a hint."""
    admin = bearer(dc_keys, "admin")
    resp = await api.get("/v1/deployments/ghost", headers=admin)
    assert resp.status_code == 404 and "GET /v1/deployments" in resp.json()["detail"]
    assert (await api.delete("/v1/deployments/ghost", headers=admin)).status_code == 404
    for method, path, body in [
        ("PUT", "/v1/deployments/ghost/scale", {"replicas": 1}),
        ("GET", "/v1/deployments/ghost/scale", None),
        ("POST", "/v1/deployments/ghost/restart", None),
    ]:
        resp = await api.request(method, path, json=body, headers=admin)
        assert resp.status_code == 404, (method, path, resp.text)


async def test_scale_bounds_and_roles(api: httpx.AsyncClient, dc_keys: Any) -> None:
    """Scaling takes 0..max replicas (checked before the name), and needs operator or admin."""
    admin = bearer(dc_keys, "admin")
    for bad in (-1, 9):
        resp = await api.put("/v1/deployments/iris/scale", json={"replicas": bad}, headers=admin)
        assert resp.status_code == 400 and "between 0 and 8" in resp.json()["detail"]
    invoker = bearer(dc_keys, "invoker")
    resp = await api.put("/v1/deployments/iris/scale", json={"replicas": 1}, headers=invoker)
    assert resp.status_code == 403
    assert (await api.post("/v1/deployments/iris/restart", headers=invoker)).status_code == 403


async def test_runtimes_say_which_can_run_here(api: httpx.AsyncClient, dc_keys: Any) -> None:
    """Triton is available beside the Python; cpp is not configured; java is (/bin/true)."""
    resp = await api.get("/v1/runtimes", headers=bearer(dc_keys, "operator"))
    assert resp.status_code == 200
    by_name = {r["name"]: r for r in resp.json()["runtimes"]}
    assert list(by_name) == ["triton", "cpp", "java"]
    assert by_name["triton"]["available"] and by_name["triton"]["frameworks"] == [
        "sklearn",
        "onnx",
        "python",
    ]
    cpp = by_name["cpp"]
    assert not cpp["available"] and cpp["command"] is None
    assert "AIMP_DEPLOY_CONTROL_CPP_POD_COMMAND" in cpp["detail"] and "make native" in cpp["detail"]
    assert by_name["java"] == {
        "name": "java",
        "available": True,
        "frameworks": ["sklearn"],
        "command": ["/bin/true"],
        "detail": None,
    }
    assert (await api.get("/v1/runtimes")).status_code == 401
