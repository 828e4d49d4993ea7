"""The C++ pod's process: refusing bad model files, its limits, and a graceful stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimp_core.net import free_port

from .conftest import ModelFiles, start_pod, stop_pod

pytestmark = pytest.mark.integration

ROW = [5.1, 3.5, 1.4, 0.2]


def _run_with_model(binary: Path, model_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "--model-file", str(model_file), "--name", "m", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def _broken(iris_forest: ModelFiles, iris_logistic: ModelFiles, case: str) -> str:
    lr: dict[str, Any] = json.loads(iris_logistic.json_file.read_text())
    forest: dict[str, Any] = json.loads(iris_forest.json_file.read_text())
    if case == "not json":
        return "{not json"
    if case == "wrong format":
        return json.dumps({**lr, "format": "onnx"})
    if case == "unknown kind":
        return json.dumps({**lr, "kind": "svm"})
    if case == "short coef row":
        lr["coef"][1] = lr["coef"][1][:3]
        return json.dumps(lr)
    if case == "missing intercept":
        del lr["intercept"]
        return json.dumps(lr)
    if case == "child out of range":
        forest["trees"][2]["left"][0] = 10**6
        return json.dumps(forest)
    if case == "cycle":
        tree = forest["trees"][0]
        inner = next(i for i, left in enumerate(tree["left"]) if left != -1 and i > 0)
        tree["right"][inner] = 0
        return json.dumps(forest)
    if case == "bad feature":
        tree = forest["trees"][0]
        tree["feature"][0] = 7
        return json.dumps(forest)
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("not json", "not valid JSON"),
        ("wrong format", 'field \'format\' is "onnx" but this server reads "aimp-sklearn-json/1"'),
        (
            "unknown kind",
            'kind "svm" is not supported; supported kinds: logistic_regression, tree_ensemble',
        ),
        ("short coef row", "coef row 1 has 3 entries, expected 4"),
        ("missing intercept", "missing field 'intercept'"),
        ("child out of range", "tree 2 node 0 has children 1000000"),
        ("cycle", "children must lie after it"),
        ("bad feature", "tree 0 node 0 splits on feature 7 but the model has 4"),
    ],
)
def test_bad_model_file_exits_nonzero_naming_file_and_problem(
    cpp_pod_binary: Path,
    iris_forest: ModelFiles,
    iris_logistic: ModelFiles,
    tmp_path: Path,
    case: str,
    expected: str,
) -> None:
    """A broken model file ends the pod with exit 1 and a message naming the file and fault."""
    model_file = tmp_path / "broken.json"
    model_file.write_text(_broken(iris_forest, iris_logistic, case))
    result = _run_with_model(cpp_pod_binary, model_file)
    assert result.returncode == 1
    assert f"model file {model_file}: " in result.stderr
    assert expected in result.stderr
    logged = json.loads(result.stdout.splitlines()[-1])
    assert logged["level"] == "ERROR"
    assert expected in logged["message"]


def test_missing_model_file_exits_nonzero(cpp_pod_binary: Path, tmp_path: Path) -> None:
    """A model file that does not exist is named in the error."""
    result = _run_with_model(cpp_pod_binary, tmp_path / "absent.json")
    assert result.returncode == 1
    assert f"model file {tmp_path / 'absent.json'}: cannot be opened" in result.stderr


def test_usage_errors_exit_2(cpp_pod_binary: Path) -> None:
    """A missing or unknown option exits 2 with the usage text."""
    result = subprocess.run(
        [str(cpp_pod_binary), "--name", "m", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 2
    assert "--model-file is required" in result.stderr
    assert "usage:" in result.stderr


def test_port_in_use_exits_nonzero(cpp_pod_binary: Path, iris_logistic: ModelFiles) -> None:
    """A port another socket holds is reported and the pod exits 1."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [
                *(str(cpp_pod_binary), "--model-file", str(iris_logistic.json_file)),
                *("--name", "m", "--port", str(port)),
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_body_over_limit_is_413(
    cpp_pod_binary: Path, iris_logistic: ModelFiles, tmp_path: Path
) -> None:
    """A body over --max-request-mib is refused with 413 and {"error"} naming the limit."""
    pod = start_pod(
        cpp_pod_binary,
        iris_logistic.json_file,
        "iris",
        tmp_path / "pod.log",
        "--max-request-mib",
        "1",
    )
    try:
        rows = [ROW] * 60_000  # about 1.3 MB of JSON
        body = json.dumps(
            {
                "inputs": [
                    {"name": "input", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}
                ]
            }
        )
        reply = httpx.post(f"{pod.url}/v2/models/iris/infer", content=body, timeout=10)
        assert reply.status_code == 413
        assert "limit of 1 MiB" in reply.json()["error"]
    finally:
        stop_pod(pod)


def _send_partial_request(port: int, body: bytes, first: int) -> socket.socket:
    """Open a connection and send the headers and the first `first` bytes of an infer body."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: pod\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    conn.sendall(head + body[:first])
    return conn


def _read_response(conn: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length"))
    while len(rest) < length:
        rest += conn.recv(65536)
    return int(lines[0].split()[1]), json.loads(rest)


def test_sigterm_finishes_in_flight_request_then_exits_0(
    cpp_pod_binary: Path, iris_logistic: ModelFiles, tmp_path: Path
) -> None:
    """After SIGTERM the pod refuses new connections, completes a request in flight, and exits 0."""
    pod = start_pod(cpp_pod_binary, iris_logistic.json_file, "iris", tmp_path / "pod.log")
    try:
        # An idle kept-alive connection must not delay the exit.
        idle = httpx.Client(timeout=5)
        assert idle.get(f"{pod.url}/v2/health/live").status_code == 200
        body = json.dumps(
            {
                "id": "in-flight",
                "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": ROW}],
            }
        ).encode()
        conn = _send_partial_request(pod.port, body, first=10)
        time.sleep(0.2)  # the pod has read the headers: the request is in flight

        started = time.monotonic()
        pod.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{pod.url}/v2/health/live", timeout=2)
        assert pod.proc.poll() is None, "the pod exited before its in-flight request finished"

        conn.sendall(body[10:])
        status, reply = _read_response(conn)
        conn.close()
        assert status == 200
        assert reply["id"] == "in-flight"
        assert reply["outputs"][1]["data"] == [0]

        assert pod.proc.wait(timeout=6) == 0
        assert time.monotonic() - started < 2.0
        idle.close()
        messages = [line["message"] for line in pod.log_lines()]
        assert messages[0] == "started"
        assert messages[-2:] == ["stopping", "stopped"]
        assert pod.log_lines()[-1]["drained"] is True
    finally:
        stop_pod(pod)


def test_sigterm_bounded_when_a_request_never_completes(
    cpp_pod_binary: Path, iris_logistic: ModelFiles, tmp_path: Path
) -> None:
    """A request stuck past --drain-timeout-s does not hold the pod: it exits 0 after it."""
    pod = start_pod(
        cpp_pod_binary,
        iris_logistic.json_file,
        "iris",
        tmp_path / "pod.log",
        "--drain-timeout-s",
        "1",
    )
    try:
        conn = _send_partial_request(pod.port, b'{"inputs": []}' + b" " * 1000, first=5)
        time.sleep(0.2)
        started = time.monotonic()
        pod.proc.send_signal(signal.SIGTERM)
        assert pod.proc.wait(timeout=5) == 0
        assert 0.9 < time.monotonic() - started < 3.0
        last = pod.log_lines()[-1]
        assert last["drained"] is False
        assert last["in_flight"] == 1
        conn.close()
    finally:
        stop_pod(pod)
