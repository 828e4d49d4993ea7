"""Integration tests: the aimp-triton-pod command serving models through real Triton."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import onnx
import psutil
import pytest
import tritonclient.http as triton_http
from onnx import TensorProto, helper

from aimp_core.net import free_port, wait_http_ok
from aimp_inference.demo import train_iris, train_iris_onnx

pytestmark = pytest.mark.integration

POD = str(Path(sys.executable).parent / "aimp-triton-pod")
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]])
#: float32 graph vs float64 scikit-learn (see test_onnx_adapter.py for the reasoning).
FP32_ATOL = 1e-5


@dataclass
class Pod:
    proc: subprocess.Popen[bytes]
    name: str
    http_port: int
    model_file: Path

    @property
    def client(self) -> triton_http.InferenceServerClient:
        return triton_http.InferenceServerClient(f"127.0.0.1:{self.http_port}")

    def wait_ready(self) -> Pod:
        url = f"http://127.0.0.1:{self.http_port}/v2/models/{self.name}/ready"
        wait_http_ok(url, timeout_s=60)
        return self


def start_pod(log_dir: Path, model_file: Path, name: str, *extra: str) -> Pod:
    """Start ``aimp-triton-pod`` serving ``model_file`` as ``name`` (in its own session)."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    with (log_dir / f"pod-{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                POD,
                "--model-file",
                str(model_file),
                "--name",
                name,
                "--http-port",
                str(http),
                "--grpc-port",
                str(grpc),
                "--metrics-port",
                str(metrics),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Pod(proc, name, http, model_file)


def weighted_graph() -> onnx.ModelProto:
    """Fixed shapes (so no batching), two inputs, and a scalar output."""
    graph = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("MatMul", ["m", "w"], ["y"]),
                helper.make_node("ReduceSum", ["y"], ["total"], keepdims=0),
            ],
            "weighted",
            [
                helper.make_tensor_value_info("m", TensorProto.FLOAT, [2, 3]),
                helper.make_tensor_value_info("w", TensorProto.FLOAT, [3]),
            ],
            [
                helper.make_tensor_value_info("y", TensorProto.FLOAT, [2]),
                helper.make_tensor_value_info("total", TensorProto.FLOAT, []),
            ],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    graph.ir_version = 8
    return graph


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pod]]:
    """Three pods started at once (Triton takes seconds to start; in parallel they overlap)."""
    base = tmp_path_factory.mktemp("pods")
    weighted = base / "weighted.bin"  # an extension that names no framework
    weighted.write_bytes(weighted_graph().SerializeToString())
    started = [
        start_pod(base, train_iris(base / "iris"), "iris"),
        start_pod(base, train_iris_onnx(base / "iris-onnx"), "iris-onnx"),
        start_pod(base, weighted, "weighted", "--framework", "onnx"),
    ]
    yield {pod.name: pod for pod in started}
    for pod in started:
        if pod.proc.poll() is None:
            os.killpg(pod.proc.pid, signal.SIGKILL)  # the pod's own session: Triton too
            pod.proc.wait()
        print((base / f"pod-{pod.name}.log").read_text()[-3000:])


def test_pod_serves_iris_and_stops_on_sigterm(pods: dict[str, Pod]) -> None:
    """The pod answers like predict_proba via tritonclient and exits 0 within 10 s of SIGTERM."""
    pod = pods["iris"].wait_ready()
    family = [psutil.Process(pod.proc.pid), *psutil.Process(pod.proc.pid).children(True)]
    assert any("tritonserver" in p.name() for p in family)

    client = pod.client
    assert client.get_model_metadata("iris")["outputs"][1]["name"] == "probabilities"
    tensor = triton_http.InferInput("input", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    result = client.infer("iris", [tensor])
    model = joblib.load(pod.model_file)
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), model.predict_proba(ROWS), atol=1e-6
    )
    assert result.as_numpy("label")[:, 0].tolist() == model.predict(ROWS).tolist()

    started = time.monotonic()
    pod.proc.send_signal(signal.SIGTERM)
    assert pod.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    _gone, alive = psutil.wait_procs(family[1:], timeout=5)
    assert not alive, f"children still alive after the pod exited: {alive}"


def test_pod_serves_onnx_iris_with_the_graph_names(pods: dict[str, Pod]) -> None:
    """An .onnx file is served by ONNX Runtime under the graph's tensor names and types,
    and answers like the scikit-learn model it was converted from (within 1e-5)."""
    pod = pods["iris-onnx"].wait_ready()
    client = pod.client
    meta = client.get_model_metadata("iris-onnx")
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("input", "FP32", [-1, 4])
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        ("label", "INT64", [-1, 1]),
        ("probabilities", "FP32", [-1, 3]),
    ]
    tensor = triton_http.InferInput("input", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS.astype(np.float32), binary_data=True)
    result = client.infer("iris-onnx", [tensor])
    # The scikit-learn model it was converted from (same seed, same data).
    model = joblib.load(pods["iris"].model_file)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities, model.predict_proba(ROWS), rtol=0, atol=FP32_ATOL)
    assert result.as_numpy("label")[:, 0].tolist() == model.predict(ROWS).tolist()


def test_pod_serves_an_unbatched_two_input_onnx_graph(pods: dict[str, Pod]) -> None:
    """A graph with fixed shapes (file named without a known extension, --framework onnx)
    is served without batching, two inputs fed by name, and its scalar output as [1]."""
    client = pods["weighted"].wait_ready().client
    meta = client.get_model_metadata("weighted")
    assert [(t["name"], t["shape"]) for t in meta["inputs"]] == [("m", [2, 3]), ("w", [3])]
    assert [(t["name"], t["shape"]) for t in meta["outputs"]] == [("y", [2]), ("total", [1])]
    assert client.get_model_config("weighted").get("max_batch_size", 0) == 0
    m = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    w = np.array([1, 0, -1], dtype=np.float32)
    inputs = []
    for name, value in (("m", m), ("w", w)):
        tensor = triton_http.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    result = client.infer("weighted", inputs)
    assert result.as_numpy("y").tolist() == [-2.0, -2.0]
    assert result.as_numpy("total").tolist() == [-4.0]
