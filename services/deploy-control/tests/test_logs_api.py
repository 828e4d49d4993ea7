"""Pod logs and cold starts through the real API: deploy-control served by uvicorn, a local
pod of real processes (a small OIP server standing in for Triton, and the real sidecar)
registering in the real registry."""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimp_deploy_control.observe_settings import PodObserveSettings

from .conftest import KeyServer
from .dc_harness import Api, bearer, new_home, oip_pod, serve_pods, wait_for


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, registry_url: str, dc_keys: KeyServer
) -> Iterator[Api]:
    """deploy-control under uvicorn whose pods print boot lines, then a tick every 50 ms."""
    observe = PodObserveSettings(log_follow_poll_interval_s=0.05)
    home = new_home(tmp_path_factory, "logs")
    pod = oip_pod("ticks")
    with serve_pods(
        home, registry_url, dc_keys, pod, observe, restart_backoff_initial_s=0.1
    ) as api:
        yield api


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    path.write_bytes(b"the fake pod does not read it")
    return path


@pytest.fixture(scope="module")
def deployed(api: Api, model_file: Path) -> str:
    """One deployment whose pod is RUNNING and registered (its cold start done)."""
    name = f"logs-{uuid.uuid4().hex[:6]}"
    api.deploy(name, model_file)

    def registered() -> dict[str, Any] | None:
        cold = api.pod(name).get("cold_start")
        return cold if cold and cold["state"] == "done" else None

    wait_for("the pod's cold start to finish", registered)
    return name


def _ticks(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.fullmatch(r"tick (\d+)", line))]


def test_tail_returns_the_last_lines_of_each_process(api: Api, deployed: str) -> None:
    """tail=N gives the server's last N lines in order; process=sidecar gives the sidecar's."""
    pod_id = f"{deployed}-0"
    resp = api.http.get(f"/v1/pods/{pod_id}/logs", params={"tail": 5}, headers=api.headers)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    lines = resp.text.splitlines()
    assert len(lines) in (5, 6)  # a 6th, partial line while the pod writes is possible
    ticks = _ticks(lines[:5])
    assert len(ticks) == 5 and ticks == list(range(ticks[0], ticks[0] + 5))
    whole = api.http.get(f"/v1/pods/{pod_id}/logs", params={"tail": 10_000}, headers=api.headers)
    assert whole.text.startswith("boot 0\nboot 1\n")
    sidecar = api.http.get(
        f"/v1/pods/{pod_id}/logs", params={"process": "sidecar"}, headers=api.headers
    )
    assert sidecar.status_code == 200 and '"logger"' in sidecar.text  # the sidecar's JSON log
    assert "tick " not in sidecar.text


def test_wrong_pod_process_or_tail_say_what_to_fix(api: Api, deployed: str, dc_keys: Any) -> None:
    """An unknown pod is a 404 naming it; an unknown process or tail is a 400; roles count."""
    resp = api.http.get("/v1/pods/ghost-0/logs/stream", headers=api.headers)
    assert resp.status_code == 404
    assert "'ghost-0'" in resp.json()["detail"] and "GET /v1/pods" in resp.json()["detail"]
    pod_id = f"{deployed}-0"
    for path in (f"/v1/pods/{pod_id}/logs", f"/v1/pods/{pod_id}/logs/stream"):
        bad = api.http.get(path, params={"process": "triton"}, headers=api.headers)
        assert bad.status_code == 400
        assert "'server', 'sidecar'" in bad.json()["detail"]
        many = api.http.get(path, params={"tail": 10_001}, headers=api.headers)
        assert many.status_code == 400 and "0 to 10000" in many.json()["detail"]
        assert api.http.get(path).status_code == 401
    invoker = bearer(dc_keys, "invoker")
    assert api.http.get(f"/v1/pods/{pod_id}/logs", headers=invoker).status_code == 403


def _open_tails(api: Api) -> float:
    text = api.http.get("/metrics").text
    match = re.search(r"^aimp_deploy_control_log_tails_open (\S+)$", text, re.M)
    assert match, "the live-tail gauge is exported"
    return float(match.group(1))


def test_stream_yields_new_lines_and_stops_on_disconnect(api: Api, deployed: str) -> None:
    """The live tail sends the last lines, then lines written after it opened, one event
    each; closing the connection ends it on the server."""
    pod_id = f"{deployed}-0"
    before = api.http.get(f"/v1/pods/{pod_id}/logs", params={"tail": 1}, headers=api.headers)
    last_before = _ticks(before.text.splitlines())[-1]
    events: list[str] = []
    with api.http.stream(
        "GET", f"/v1/pods/{pod_id}/logs/stream", params={"tail": 3}, headers=api.headers
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        open_meanwhile = None
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
                if len(events) == 1:  # leaving the loop would close the connection
                    open_meanwhile = _open_tails(api)
            if len(events) >= 15:
                break
    assert open_meanwhile == 1.0
    ticks = _ticks(events)
    assert len(ticks) == 15 and ticks == list(range(ticks[0], ticks[0] + 15))
    assert ticks[0] <= last_before + 3  # it began with the tail...
    assert ticks[-1] > last_before + 5  # ...and went on with lines written after it opened
    wait_for("the server to end the tail", lambda: True if _open_tails(api) == 0 else None, 10)


def test_stream_ends_when_the_pod_stops(api: Api, model_file: Path) -> None:
    """Scaling a pod away ends its live tail after the last lines it wrote."""
    name = f"stop-{uuid.uuid4().hex[:6]}"
    api.deploy(name, model_file)
    wait_for("the pod to run", lambda: True if api.pod(name)["state"] == "RUNNING" else None)
    done = threading.Event()
    events: list[str] = []

    def read() -> None:
        with (
            httpx.Client(base_url=api.url, timeout=30) as http,
            http.stream(
                "GET", f"/v1/pods/{name}-0/logs/stream", params={"tail": 0}, headers=api.headers
            ) as resp,
        ):
            events.extend(ln for ln in resp.iter_lines() if ln.startswith("data: "))
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for("the tail to open", lambda: True if _open_tails(api) >= 1 else None, 10)
    resp = api.http.put(f"/v1/deployments/{name}/scale", json={"replicas": 0}, headers=api.headers)
    assert resp.status_code == 200, resp.text
    assert done.wait(20), "the live tail ended when its pod stopped"
    assert _ticks([e.removeprefix("data: ") for e in events])


def test_cold_start_phases_are_reported_and_renewed_on_restart(api: Api, deployed: str) -> None:
    """A RUNNING pod shows every phase in ms; after its server is killed, the restart is
    measured as a new cold start."""
    pod = api.pod(deployed)
    cold = pod["cold_start"]
    parts = [cold["process_start_ms"], cold["model_load_ms"], cold["registration_ms"]]
    assert all(isinstance(p, float) and p >= 0 for p in parts)
    assert abs(sum(parts) - cold["total_ms"]) < 0.01
    server = next(p for p in pod["processes"] if p["role"] == "triton")
    os.kill(server["pid"], signal.SIGKILL)

    def renewed() -> dict[str, Any] | None:
        again = api.pod(deployed)["cold_start"]
        newer = again["requested_at"] > cold["requested_at"]
        return again if newer and again["state"] == "done" else None

    again = wait_for("the restarted server's cold start", renewed)
    assert again["total_ms"] > 0


def test_idle_stream_sends_heartbeats(
    api: Api, deployed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tail with nothing new sends `: ping` comments (every 15 s; shortened here)."""
    import fastapi.routing

    monkeypatch.setattr(fastapi.routing, "_PING_INTERVAL", 0.3)
    with api.http.stream(
        "GET",
        f"/v1/pods/{deployed}-0/logs/stream",
        params={"process": "sidecar", "tail": 0},
        headers=api.headers,
    ) as resp:
        assert resp.status_code == 200
        pings = 0
        for line in resp.iter_lines():
            pings += line == ": ping"
            if pings == 2:
                break
