"""The load test through the real API: deploy-control served by uvicorn, a local pod of real
processes (tests/knee_server.py standing in for Triton, and the real sidecar registering in
the real registry), its state in SQL across a restart of deploy-control."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from aimp_deploy_control.loadtest import LoadTestState
from aimp_deploy_control.loadtest_settings import LoadTestSettings
from aimp_deploy_control.loadtest_store import LoadTestStore
from aimp_deploy_control.local_backend import LocalProcessBackend

from .conftest import KeyServer
from .dc_harness import Api, fast_sidecars, local_settings, make_app, new_home, served, wait_for

KNEE_SERVER = Path(__file__).with_name("knee_server.py")


def loadtest(api: Api, name: str) -> dict[str, Any]:
    """GET /v1/deployments/{name}/loadtest (200 expected)."""
    resp = api.get(f"/v1/deployments/{name}/loadtest")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_home(tmp_path_factory, "loadtest")


@pytest.fixture(scope="module")
def serve(home: Path, registry_url: str, dc_keys: KeyServer) -> Iterator[Callable[[], Any]]:
    """Starts deploy-control on ``home`` (again after a stop: same database)."""
    # 20 ms a call up to 2 in flight, 300 ms beyond: the knee is near 100 calls/s.
    pod = [sys.executable, str(KNEE_SERVER), "--base-ms", "20", "--knee", "2", "--slow-ms", "300"]

    @contextmanager
    def running() -> Iterator[Api]:
        settings = local_settings(home, registry_url, dc_keys, pod, restart_backoff_initial_s=0.1)
        app = make_app(settings, dc_keys, LocalProcessBackend(settings))
        app.state.loadtest_settings = LoadTestSettings(start_rps=20, min_rps=2, resolution=0.2)
        with served(app, dc_keys) as api:
            yield api

    with fast_sidecars():
        yield running


def deploy(api: Api, home: Path) -> str:
    model = home / "model.joblib"
    model.write_bytes(b"the knee server does not read it")
    name = f"lt-{uuid.uuid4().hex[:6]}"
    api.deploy(name, model)
    wait_for("the pod to be RUNNING", lambda: True if running(api, name) else None)
    return name


def running(api: Api, name: str) -> bool:
    pods = api.get(f"/v1/deployments/{name}").json()["pods"]
    return bool(pods) and pods[0]["state"] == "RUNNING"


def test_load_test_runs_to_a_result_that_survives_a_restart(
    serve: Callable[[], Any], home: Path, dc_keys: Any
) -> None:
    """POST starts a load test (202, Location), a second one is a 409 while it runs, GET
    shows its steps and then its result; it is still there after deploy-control restarts,
    one running at a stop is recorded as cancelled, and with no ready replica a new one is
    refused."""
    with serve() as api:
        name = deploy(api, home)
        assert api.get(f"/v1/deployments/{name}/loadtest").status_code == 404
        body = {"latency_target_ms": 120, "max_rate": 400, "step_duration_s": 0.5}
        resp = api.post(f"/v1/deployments/{name}/loadtest", body)
        assert resp.status_code == 202, resp.text
        assert resp.headers["location"] == f"/v1/deployments/{name}/loadtest"
        assert resp.json()["state"] == "running" and resp.json()["pod_id"] == f"{name}-0"
        again = api.post(f"/v1/deployments/{name}/loadtest", body)
        assert again.status_code == 409 and "already running" in again.json()["detail"]
        progress = wait_for(
            "a step in progress",
            lambda: t if (t := loadtest(api, name))["current_step"] >= 2 else None,
        )
        assert progress["state"] == "running" and progress["current_rate_rps"] > 0
        done = wait_for(
            "the load test to finish",
            lambda: t if (t := loadtest(api, name))["state"] != "running" else None,
        )
        assert done["state"] == "done", done
        result = done["result"]
        assert 10 <= result["max_rate_rps"] <= 150, done["steps"]
        assert result["autoscaling_target_rps"] == pytest.approx(0.7 * result["max_rate_rps"])
        assert result["recommended_concurrency"] >= 1
        assert any(not s["passed"] and s["reason"] for s in done["steps"])
        assert all(
            s["offered_rps"] > result["max_rate_rps"] for s in done["steps"] if not s["passed"]
        )
        assert done["stop_reason"] == "converged" and done["finished_at"]

    with serve() as api:
        assert loadtest(api, name) == done  # stored in SQL
        wait_for("the restored pod", lambda: True if running(api, name) else None)
        long = {"latency_target_ms": 120, "max_rate": 400, "step_duration_s": 60}
        assert api.post(f"/v1/deployments/{name}/loadtest", long).status_code == 202
        # deploy-control stops in the middle of a 60 s step

    with serve() as api:
        cancelled = loadtest(api, name)
        assert cancelled["state"] == "cancelled" and "stopped" in cancelled["error"]
        scaled = api.http.put(
            f"/v1/deployments/{name}/scale", json={"replicas": 0}, headers=api.headers
        )
        assert scaled.status_code == 200, scaled.text
        refused = api.post(f"/v1/deployments/{name}/loadtest", body)
        assert refused.status_code == 409 and "scale it to at least 1" in refused.json()["detail"]


def test_unknown_deployment_bad_input_and_roles(serve: Callable[[], Any], dc_keys: Any) -> None:
    """An unknown deployment is a 404, a bad body a 422, and only operators may start one."""
    with serve() as api:
        body = {"latency_target_ms": 50, "max_rate": 100}
        missing = api.post("/v1/deployments/ghost/loadtest", body)
        assert missing.status_code == 404 and "'ghost'" in missing.json()["detail"]
        assert api.get("/v1/deployments/ghost/loadtest").status_code == 404
        bad = api.post("/v1/deployments/ghost/loadtest", {"latency_target_ms": -1, "max_rate": 1})
        assert bad.status_code == 422
        low = api.post("/v1/deployments/ghost/loadtest", {"latency_target_ms": 5, "max_rate": 0.5})
        assert low.status_code in (400, 404)
        reader = {"Authorization": f"Bearer {dc_keys.mint(['auditor'])}"}
        denied = api.http.post("/v1/deployments/ghost/loadtest", json=body, headers=reader)
        assert denied.status_code == 403
        assert api.http.get("/v1/deployments/ghost/loadtest").status_code == 401


def test_a_test_left_running_is_marked_failed_at_start(home: Path) -> None:
    """A row a stopped deploy-control left RUNNING is FAILED at the next start, saying why."""
    engine = create_engine(f"sqlite:///{home / 'lt-store.db'}")
    store = LoadTestStore(engine)
    store.create_schema()
    test = store.add("m", "m-0", "1", latency_target_ms=50, max_rate_rps=100, step_duration_s=1)
    assert store.interrupt_running("deploy-control stopped") == 1
    after = store.latest("m", test.started_at)
    assert after is not None and after.state is LoadTestState.FAILED
    assert after.error == "deploy-control stopped" and after.finished_at is not None
    assert store.interrupt_running("again") == 0
    engine.dispose()
