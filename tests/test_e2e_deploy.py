"""End to end, as a new user: `aimp up`, then `aimp deploy` of an ONNX and a scikit-learn
model, each answering through the gateway like scikit-learn itself; a model whose declared
schema does not match its file is refused with the wrong field named.

Everything is real (one stack for the whole module, on free ports under a temporary
AIMP_HOME): the upload goes to deploy-control's model registry, the pods are Triton
servers with their sidecars, the calls go through the gateway.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pytest
import tritonclient.http as triton_http
from sklearn.datasets import load_iris

from aimp_core.net import free_port
from aimp_inference.demo import train_iris, train_iris_onnx

pytestmark = pytest.mark.integration

AIMP = str(Path(sys.executable).parent / "aimp")
#: float32 graph vs float64 scikit-learn.
FP32_ATOL = 1e-5


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    gateway: str
    models: Path

    def aimp(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIMP, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def demo_headers(self) -> dict[str, str]:
        import httpx

        client = json.loads((self.home / "credentials.json").read_text())["clients"][0]
        resp = httpx.post(
            f"http://{self.gateway}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client["client_id"], client["client_secret"]),
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("e2e-deploy")
    home = base / "aimp-home"
    ports = {
        name: free_port()
        for name in ("gateway", "registry", "deploy_control", "throttle", "stats", "kafka")
    }
    env = {**os.environ, "AIMP_HOME": str(home), "AIMP_REDIS_URL": redis_url}
    env.update({f"AIMP_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env.pop("AIMP_TOKEN", None)
    up = subprocess.run([AIMP, "up"], env=env, capture_output=True, text=True, timeout=300)
    s = Stack(home, env, f"127.0.0.1:{ports['gateway']}", base / "user-models")
    try:
        assert up.returncode == 0, f"aimp up failed:\n{up.stdout}\n{up.stderr}"
        yield s
    finally:
        s.aimp("down", timeout=120)


def _infer(stack: Stack, service: str, x: np.ndarray, datatype: str) -> np.ndarray:
    client = triton_http.InferenceServerClient(stack.gateway)
    inp = triton_http.InferInput("input", list(x.shape), datatype)
    inp.set_data_from_numpy(x)
    result = client.infer(service, [inp], headers=stack.demo_headers())
    got = result.as_numpy("probabilities")
    assert got is not None
    return got


def _timing(out: str) -> float:
    match = re.search(r"deployed '[^']+' in ([0-9.]+) s", out)
    assert match, out
    return float(match.group(1))


def test_deploy_onnx_with_schema_answers_like_sklearn(stack: Stack) -> None:
    """`aimp deploy model.onnx --schema` returns once the model answers, and it answers
    like the scikit-learn model it was converted from."""
    model_file = train_iris_onnx(stack.models / "onnx")
    out = stack.aimp(
        "deploy", str(model_file), "--name", "flowers-onnx", "--schema",
        str(model_file.parent / "schema.json"), "--quiet",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "schema checked against the file" in out.stdout
    assert _timing(out.stdout) > 0
    model = joblib.load(train_iris(stack.models / "sk-reference"))
    x = load_iris().data[::7]
    got = _infer(stack, "flowers-onnx", x.astype(np.float32), "FP32")
    np.testing.assert_allclose(got, model.predict_proba(x), atol=FP32_ATOL, rtol=0)


def test_deploy_sklearn_without_schema_answers_like_sklearn(stack: Stack) -> None:
    """`aimp deploy model.joblib` infers the schema, shows progress, serves predict_proba, and
    with --load-test-ms reports what one replica sustains."""
    model_file = train_iris(stack.models / "sk")
    out = stack.aimp(
        "deploy", str(model_file), "--name", "flowers-sk",
        "--load-test-ms", "1000", "--load-test-max-rate", "40",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "schema read from the file" in out.stdout
    # The optional load test after the deploy: steps up to the 40/s cap, then the result.
    assert "load test  one replica, p99 target 1000 ms, up to 40/s" in out.stdout
    assert out.stdout.count("  step ") >= 2 and "sustains" in out.stdout
    assert "recommended concurrency" in out.stdout
    assert "pods       flowers-sk-0 RUNNING" in out.stdout
    assert "answered" in out.stdout and "probabilities [1, 3]" in out.stdout
    x = load_iris().data[::7]
    got = _infer(stack, "flowers-sk", x, "FP64")
    np.testing.assert_allclose(got, joblib.load(model_file).predict_proba(x), atol=1e-6, rtol=0)


def test_mismatching_schema_is_refused_naming_the_field(stack: Stack) -> None:
    """A schema of 5 features for a 4-feature model is refused, naming the input and the
    features the model expects; no service is created."""
    model_file = train_iris(stack.models / "sk-bad")
    schema = stack.models / "bad-schema.json"
    schema.write_text(
        json.dumps({"inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 5]}]})
    )
    out = stack.aimp("deploy", str(model_file), "--name", "flowers-bad", "--schema", str(schema))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "input 'input' shape [-1, 5]: the model expects 4 features" in out.stderr
    status = json.loads(stack.aimp("status", "--json").stdout)
    assert all(p["deployment"] != "flowers-bad" for p in status["pods"])


HANDLER = """
import numpy as np

def predict(inputs):
    x = inputs["x"]
    return {"score": 2.0 * x.sum(axis=1, keepdims=True)}
"""


def test_deploy_python_handler_serves_its_predict(stack: Stack) -> None:
    """A custom handler with its schema is served by the Triton pod and answers through the
    gateway with what its predict computes."""
    stack.models.mkdir(parents=True, exist_ok=True)
    handler = stack.models / "handler.py"
    handler.write_text(HANDLER)
    schema = stack.models / "handler-schema.json"
    schema.write_text(
        json.dumps(
            {
                "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 4]}],
                "outputs": [{"name": "score", "datatype": "FP64", "shape": [-1, 1]}],
            }
        )
    )
    out = stack.aimp("deploy", str(handler), "--name", "rules", "--schema", str(schema), "--quiet")
    assert out.returncode == 0, out.stdout + out.stderr
    x = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]])
    client = triton_http.InferenceServerClient(stack.gateway)
    inp = triton_http.InferInput("x", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    result = client.infer("rules", [inp], headers=stack.demo_headers())
    np.testing.assert_allclose(result.as_numpy("score"), [[20.0], [4.0]])
