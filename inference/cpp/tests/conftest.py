"""Fixtures for the C++ pod's tests: the build (once per session), model files, running pods.

The pod is the real binary built by ../build.sh, started on a free port; nothing is faked.
When the build script exits 3 (a toolchain part or library is missing) the tests are
skipped with its message; any other build failure fails them.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import numpy.typing as npt
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from aimp_core.net import free_port
from aimp_inference.demo import train_iris
from aimp_inference.export import export_file, export_model

CPP_DIR = Path(__file__).resolve().parents[1]
BUILD_EXIT_MISSING = 3


@dataclass
class Pod:
    """A running pod process and where it answers."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """host:port, as tritonclient takes it."""
        return f"127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@dataclass
class ModelFiles:
    """An exported model with the fitted scikit-learn model it came from."""

    json_file: Path
    model: Any  # the fitted scikit-learn classifier


@pytest.fixture(scope="session")
def cpp_pod_binary() -> Path:
    """The pod binary, built (incrementally) by build.sh once per session."""
    result = subprocess.run(
        [str(CPP_DIR / "build.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode == BUILD_EXIT_MISSING:
        pytest.skip(f"C++ pod not built: {result.stderr.strip()}")
    if result.returncode != 0:
        pytest.fail(f"build.sh failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return CPP_DIR / "build" / "aimp-cpp-pod"


@pytest.fixture(scope="session")
def cpp_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cpp-pod-models")


@pytest.fixture(scope="session")
def iris_logistic(cpp_models_dir: Path) -> ModelFiles:
    """The iris demo LogisticRegression, exported to the portable JSON."""
    joblib_file = train_iris(cpp_models_dir / "iris")
    json_file = export_file(joblib_file, cpp_models_dir / "iris.json")
    return ModelFiles(json_file, joblib.load(joblib_file))


@pytest.fixture(scope="session")
def iris_forest(cpp_models_dir: Path) -> ModelFiles:
    """A RandomForestClassifier on iris, exported to the portable JSON."""
    iris = load_iris()
    model = RandomForestClassifier(n_estimators=25, random_state=0).fit(iris.data, iris.target)
    json_file = cpp_models_dir / "forest.json"
    json_file.write_text(json.dumps(export_model(model)))
    return ModelFiles(json_file, model)


@pytest.fixture(scope="session")
def iris_rows() -> npt.NDArray[np.float64]:
    """All 150 iris rows as float64."""
    return np.asarray(load_iris().data, dtype=np.float64)


def start_pod(
    binary: Path, model_file: Path, name: str, log: Path, *extra: str, timeout_s: float = 10.0
) -> Pod:
    """Start the pod and return once /v2/health/ready answers 200; fail with its log if not."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "--model-file",
                str(model_file),
                "--name",
                name,
                "--port",
                str(port),
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pod = Pod(proc, port, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"pod exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{pod.url}/v2/health/ready", timeout=1.0).status_code == 200:
                return pod
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    stop_pod(pod)
    pytest.fail(f"pod not ready within {timeout_s} s:\n{log.read_text()}")


def stop_pod(pod: Pod) -> None:
    if pod.proc.poll() is None:
        pod.proc.terminate()
        try:
            pod.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pod.proc.kill()
            pod.proc.wait(timeout=5)


@pytest.fixture(scope="session")
def iris_pod(
    cpp_pod_binary: Path, iris_logistic: ModelFiles, cpp_models_dir: Path
) -> Iterator[Pod]:
    """A pod serving the iris LogisticRegression as model 'iris' for the whole session."""
    pod = start_pod(cpp_pod_binary, iris_logistic.json_file, "iris", cpp_models_dir / "iris.log")
    yield pod
    stop_pod(pod)


@pytest.fixture(scope="session")
def forest_pod(
    cpp_pod_binary: Path, iris_forest: ModelFiles, cpp_models_dir: Path
) -> Iterator[Pod]:
    """A pod serving the iris RandomForest as model 'forest' for the whole session."""
    pod = start_pod(cpp_pod_binary, iris_forest.json_file, "forest", cpp_models_dir / "forest.log")
    yield pod
    stop_pod(pod)
