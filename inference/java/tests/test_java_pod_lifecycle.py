"""The Java pod's process life: refusing bad model files, and draining then exiting 0 on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

RunningPod = Any  # conftest.RunningPod (test modules cannot import conftest in importlib mode)


def log_events(pod: RunningPod) -> list[dict[str, Any]]:
    """The pod's stdout, parsed line by line as JSON (every line must be an object)."""
    return [json.loads(line) for line in pod.log_text().splitlines() if line.strip()]


def test_sigterm_exits_zero_and_logs_start_and_stop(
    java_pod_factory: Callable[..., RunningPod], java_models: dict[str, Any]
) -> None:
    """SIGTERM on an idle pod exits 0 within a second and the JSON log has start and stop events."""
    pod = java_pod_factory(java_models["forest"].json_file, "forest")
    begin = time.monotonic()
    assert pod.terminate() == 0
    assert time.monotonic() - begin < 3
    events = log_events(pod)
    assert [e.get("event") for e in events] == ["start", "stopping", "stop"]
    start = events[0]
    assert start["level"] == "INFO"
    assert (start["model"], start["kind"], start["n_features"], start["n_classes"]) == (
        "forest",
        "tree_ensemble",
        4,
        3,
    )
    assert start["port"] == pod.port
    assert events[-1]["abandoned_requests"] == 0


def test_sigterm_finishes_the_request_in_flight(
    java_pod_factory: Callable[..., RunningPod], java_models: dict[str, Any]
) -> None:
    """A request whose body is still arriving at SIGTERM is answered 200, readiness turns 503, and
    the pod then exits 0."""
    pod = java_pod_factory(java_models["iris"].json_file, "iris")
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5, 3, 1, 0]}]}
    ).encode()
    head = (
        f"POST /v2/models/iris/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", pod.port), timeout=10) as sock:
        sock.sendall(head + body[:10])
        time.sleep(0.3)  # the server has parsed the headers and waits for the body
        pod.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert pod.proc.poll() is None, "the pod must wait for the request in flight"
        ready = httpx.get(f"{pod.url}/v2/health/ready", timeout=5)
        assert ready.status_code == 503
        assert "shutting down" in ready.json()["error"]
        sock.sendall(body[10:])
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}]}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert b'"label"' in reply
    assert pod.proc.wait(timeout=10) == 0
    assert log_events(pod)[-1]["abandoned_requests"] == 0


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read model file"),
        ("{not json", "is not valid JSON"),
        ('{"format": "aimp-sklearn-json/2"}', "format is 'aimp-sklearn-json/2'"),
        (
            '{"format": "aimp-sklearn-json/1", "kind": "svm", "n_features": 2, "classes": [0, 1]}',
            "kind 'svm' is not supported",
        ),
        (
            '{"format": "aimp-sklearn-json/1", "kind": "logistic_regression", "n_features": 2,'
            ' "classes": [0, 1, 2], "coef": [[1, 2], [3, 4]], "intercept": [0, 0]}',
            "coef has 2 rows but there are 3 classes",
        ),
        (
            '{"format": "aimp-sklearn-json/1", "kind": "tree_ensemble", "n_features": 2,'
            ' "classes": [0, 1], "trees": [{"left": [1, -1, -1], "right": [2, -1, -1],'
            ' "feature": [5, -2, -2], "threshold": [0.5, -2, -2],'
            ' "value": [[0.5, 0.5], [1, 0], [0, 1]]}]}',
            "node 0 tests feature 5 but the model has 2 features",
        ),
        (
            '{"format": "aimp-sklearn-json/1", "kind": "tree_ensemble", "n_features": 2,'
            ' "classes": [0, 1], "trees": [{"left": [0, -1], "right": [1, -1],'
            ' "feature": [0, -2], "threshold": [0.5, -2], "value": [[0.5, 0.5], [1, 0]]}]}',
            "children must lie in (0, 2)",
        ),
    ],
)
def test_bad_model_file_exits_nonzero_naming_file_and_fault(
    java_pod_launcher: Path, tmp_path: Path, content: str | None, fragment: str
) -> None:
    """A missing or broken model file stops the pod with exit code 1 and a message naming it."""
    model_file = tmp_path / "model.json"
    if content is not None:
        model_file.write_text(content)
    result = subprocess.run(
        [str(java_pod_launcher), "--model-file", str(model_file), "--name", "m", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert str(model_file) in result.stderr
    assert fragment in result.stderr
    error = json.loads(result.stdout.splitlines()[-1])
    assert error["level"] == "ERROR"
    assert fragment in error["message"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--name", "m", "--port", "1"], "--model-file is required"),
        (["--model-file", "x", "--name", "m", "--port", "http"], "--port must be an integer"),
        (["--model-file", "x", "--name", "m", "--port", "1", "--colour", "red"], "unknown option"),
    ],
)
def test_bad_command_line_exits_2_with_usage(
    java_pod_launcher: Path, args: list[str], fragment: str
) -> None:
    """A wrong command line exits 2 and says what is wrong, followed by the usage."""
    result = subprocess.run(
        [str(java_pod_launcher), *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "usage: aimp-java-pod" in result.stderr


def test_port_in_use_exits_nonzero(java_pod_launcher: Path, java_models: dict[str, Any]) -> None:
    """A port that another socket holds makes the pod exit 1 naming the address."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [
                str(java_pod_launcher),
                "--model-file",
                str(java_models["iris"].json_file),
                "--name",
                "iris",
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_body_over_the_limit_is_413(
    java_pod_factory: Callable[..., RunningPod], java_models: dict[str, Any]
) -> None:
    """A body above --max-body-mib is refused with 413 and a hint, and the pod keeps serving."""
    pod = java_pod_factory(java_models["iris"].json_file, "iris", "--max-body-mib", "1")
    url = f"{pod.url}/v2/models/iris/infer"
    reply = httpx.post(url, content=b"[" + b"1.0," * 400_000 + b"1.0]", timeout=10)
    assert reply.status_code == 413
    assert "--max-body-mib" in reply.json()["error"]
    ok = httpx.post(
        url,
        json={"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1] * 4}]},
        timeout=10,
    )
    assert ok.status_code == 200


def test_build_is_incremental_and_names_missing_packages(java_pod_launcher: Path) -> None:
    """A second build does nothing, and missing Jackson jars exit 3 naming the Debian package."""
    script = java_pod_launcher.parent.parent / "build.sh"
    again = subprocess.run([str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0
    assert "up to date" in again.stdout
    missing = subprocess.run(
        [str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "AIMP_JAVA_LIB_DIR": "/nonexistent"},
    )
    assert missing.returncode == 3
    assert "libjackson2-databind-java" in missing.stderr
