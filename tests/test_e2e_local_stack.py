"""End to end, as a new user: `aimp up`, one real inference through the gateway, `aimp down`.

Everything here is real: Redis, Tansu, the registry, the gateway, stats, throttle,
deploy-control, a Triton server with a sidecar. The stack runs on free ports under
a temporary AIMP_HOME so it never meets a developer's own `make up`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from aimp_core.net import free_port, port_open

pytestmark = pytest.mark.integration

AIMP = str(Path(sys.executable).parent / "aimp")


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    ports: dict[str, int]
    up_output: str

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports['gateway']}"

    @property
    def credentials(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / "credentials.json").read_text())
        return data

    def aimp(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIMP, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def token(self, client_id: str, secret: str) -> str:
        resp = httpx.post(
            f"http://{self.gateway}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def demo_token(self) -> str:
        client = self.credentials["clients"][0]
        return self.token(client["client_id"], client["client_secret"])

    def admin_token(self) -> str:
        admin = self.credentials["admin"]
        resp = httpx.post(
            f"http://{self.gateway}/oauth/token",
            data={
                "grant_type": "password",
                "username": admin["username"],
                "password": admin["password"],
            },
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("e2e") / "aimp-home"
    ports = {
        name: free_port()
        for name in ("gateway", "registry", "deploy_control", "throttle", "stats", "kafka")
    }
    env = {**os.environ, "AIMP_HOME": str(home), "AIMP_REDIS_URL": redis_url}
    env.update({f"AIMP_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    up = subprocess.run([AIMP, "up"], env=env, capture_output=True, text=True, timeout=300)
    s = Stack(home, env, ports, up.stdout + up.stderr)
    try:
        assert up.returncode == 0, f"aimp up failed:\n{s.up_output}\n{_logs(home)}"
        yield s
    finally:
        s.aimp("down", timeout=120)


def _logs(home: Path) -> str:
    out = []
    for log in sorted((home / "logs").rglob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-20:]
        out.append(f"--- {log.name}\n" + "\n".join(lines))
    return "\n".join(out)


def test_up_prints_endpoints_and_credentials_path(stack: Stack) -> None:
    """`aimp up` tells the user where the gateway is and where the credentials live."""
    assert f"http://{stack.gateway}" in stack.up_output
    assert str(stack.home / "credentials.json") in stack.up_output
    assert oct((stack.home / "credentials.json").stat().st_mode & 0o777) == "0o600"


def test_tritonclient_infers_iris_through_gateway_like_sklearn(stack: Stack) -> None:
    """tritonclient through the gateway returns scikit-learn's predict_proba within 1e-6."""
    import joblib
    import tritonclient.http as triton_http
    from sklearn.datasets import load_iris

    model_file = next((stack.home / "models" / "iris").rglob("model.joblib"))
    model = joblib.load(model_file)
    x = load_iris().data[::10].astype(np.float64)
    expected = model.predict_proba(x)

    client = triton_http.InferenceServerClient(stack.gateway)
    headers = {"Authorization": f"Bearer {stack.demo_token()}"}
    inp = triton_http.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    result = client.infer("iris", [inp], headers=headers)
    got = result.as_numpy("probabilities")
    assert got is not None
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("runtime", ["cpp", "java"])
def test_native_pods_serve_iris_through_gateway_like_sklearn(stack: Stack, runtime: str) -> None:
    """The C++ and Java demo pods answer through the gateway like scikit-learn, within 1e-6."""
    if f"{runtime} pod        not built" in stack.up_output:
        pytest.skip(f"the {runtime} pod was not built here (make native says why)")
    import joblib
    import tritonclient.http as triton_http
    from sklearn.datasets import load_iris

    model = joblib.load(next((stack.home / "models" / "iris").rglob("model.joblib")))
    x = load_iris().data.astype(np.float64)
    client = triton_http.InferenceServerClient(stack.gateway)
    headers = {"Authorization": f"Bearer {stack.demo_token()}"}
    for binary in (False, True):
        inp = triton_http.InferInput("input", list(x.shape), "FP64")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = triton_http.InferRequestedOutput("probabilities", binary_data=binary)
        result = client.infer(f"iris-{runtime}", [inp], outputs=[out], headers=headers)
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), model.predict_proba(x), atol=1e-6, rtol=0
        )


def test_no_token_is_401_with_bearer_challenge(stack: Stack) -> None:
    """A call without a token is refused with 401 and a Bearer challenge."""
    resp = httpx.post(f"http://{stack.gateway}/v2/models/iris/infer", json={}, timeout=10)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "error" in resp.json()


def test_client_without_invoke_role_is_403(stack: Stack) -> None:
    """A client an admin created without an invoke role may not call models."""
    admin = {"Authorization": f"Bearer {stack.admin_token()}"}
    resp = httpx.post(
        f"http://{stack.gateway}/admin/clients",
        json={"client_id": "reporting-tool", "roles": ["operator"]},
        headers=admin,
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    secret = resp.json()["client_secret"]
    token = stack.token("reporting-tool", secret)
    call = httpx.get(
        f"http://{stack.gateway}/v2/models/iris",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert call.status_code == 403


def test_unknown_model_is_404_in_protocol_shape(stack: Stack) -> None:
    """An unknown model gives 404 with the protocol's {"error": ...} body."""
    resp = httpx.post(
        f"http://{stack.gateway}/v2/models/no-such-model/infer",
        json={"inputs": []},
        headers={"Authorization": f"Bearer {stack.demo_token()}"},
        timeout=10,
    )
    assert resp.status_code == 404
    assert set(resp.json()) == {"error"}


def test_calls_are_counted_in_stats_within_5s(stack: Stack) -> None:
    """A call through the gateway shows up in /v1/usage?service=iris within 5 s."""
    stats = f"http://127.0.0.1:{stack.ports['stats']}/v1/usage"
    admin = {"Authorization": f"Bearer {stack.admin_token()}"}
    before = httpx.get(stats, params={"service": "iris"}, headers=admin, timeout=10).json()
    token = stack.demo_token()
    resp = httpx.get(
        f"http://{stack.gateway}/v2/models/iris/ready",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.status_code == 200
    deadline = time.monotonic() + 5
    now: dict[str, Any] = before
    while time.monotonic() < deadline:
        now = httpx.get(stats, params={"service": "iris"}, headers=admin, timeout=10).json()
        if now["requests"] > before["requests"]:
            break
        time.sleep(0.2)
    assert now["requests"] > before["requests"], now
    assert now["p99_ms"] is not None


def test_status_json_lists_healthy_components_and_pods(stack: Stack) -> None:
    """`aimp status --json` lists every component healthy and the demo pod."""
    out = stack.aimp("status", "--json")
    body = json.loads(out.stdout)
    names = {c["name"]: c for c in body["components"]}
    for name in ("kafka", "registry", "gateway", "throttle", "stats", "deploy-control"):
        assert names[name]["healthy"], body
        assert names[name]["pid"]
    assert body["pods"], body


def test_second_up_is_harmless_and_restarts_a_dead_component(stack: Stack) -> None:
    """A second `aimp up` keeps running parts and restarts one that has died."""
    stats_pid = json.loads((stack.home / "run" / "stats.pid").read_text())["pid"]
    gateway_pid = json.loads((stack.home / "run" / "gateway.pid").read_text())["pid"]
    psutil.Process(stats_pid).kill()
    psutil.Process(stats_pid).wait(timeout=10)
    again = stack.aimp("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((stack.home / "run" / "gateway.pid").read_text())["pid"] == gateway_pid
    new_stats = json.loads((stack.home / "run" / "stats.pid").read_text())["pid"]
    assert new_stats != stats_pid and psutil.pid_exists(new_stats)


def test_down_leaves_no_process_and_no_port(stack: Stack) -> None:
    """`aimp down` stops every process it started and frees every port."""
    pids = []
    for pid_file in (stack.home / "run").rglob("*.pid"):
        pids.append(json.loads(pid_file.read_text())["pid"])
    assert pids
    children = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            children.extend(p.pid for p in psutil.Process(pid).children(recursive=True))
    down = stack.aimp("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    alive = [
        p
        for p in pids + children
        if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
    ]
    assert not alive, f"still running: {alive}"
    open_ports = [name for name, port in stack.ports.items() if port_open("127.0.0.1", port)]
    assert not open_ports, f"still listening: {open_ports}"
