"""Fixtures for the Java pod's tests: build it once, export real scikit-learn models, start pods.

The pod is built by ``inference/java/build.sh`` once per session; when that script exits 3 (a JDK
or the Jackson jars are missing) every test here is skipped with its message. Pods are real
processes on free ports, stopped with SIGTERM at the end.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from aimp_core.net import free_port
from aimp_inference.demo import train_iris
from aimp_inference.export import export_file, export_model

JAVA_DIR = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = JAVA_DIR / "build.sh"
LAUNCHER = JAVA_DIR / "build" / "aimp-java-pod"
#: build.sh's exit code for "a tool or library is missing".
MISSING_DEPENDENCY = 3


@dataclass(frozen=True)
class ExportedModel:
    """A fitted scikit-learn classifier, its portable JSON file, and data to evaluate it on."""

    name: str
    model: Any
    json_file: Path
    x: np.ndarray


@dataclass
class RunningPod:
    """A started pod process: where it listens and where its stdout goes."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """host:port as tritonclient wants it."""
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout_s: float = 10.0) -> int:
        """SIGTERM the pod and return its exit code (kills it if it overstays)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise


@pytest.fixture(scope="session")
def java_pod_launcher() -> Path:
    """The built launcher script; the build runs once per session (skip when build.sh exits 3)."""
    result = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode == MISSING_DEPENDENCY:
        pytest.skip(f"Java pod not buildable here: {result.stderr.strip()}")
    if result.returncode != 0:
        pytest.fail(f"build.sh failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return LAUNCHER


def start_pod(launcher: Path, model_file: Path, name: str, log: Path, *extra: str) -> RunningPod:
    """Start a pod on a free port and wait until it is ready (fails with its log otherwise)."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(launcher),
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
    pod = RunningPod(proc, port, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"pod exited with {proc.returncode}:\n{pod.log_text()}")
        try:
            if httpx.get(f"{pod.url}/v2/health/ready", timeout=1.0).status_code == 200:
                return pod
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pod.terminate()
    pytest.fail(f"pod not ready within 30 s:\n{pod.log_text()}")


@pytest.fixture(scope="session")
def java_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExportedModel]:
    """The iris demo logistic regression, an iris random forest and a binary logistic regression."""
    root = tmp_path_factory.mktemp("java-models")
    iris = load_iris()
    lr_file = train_iris(root / "iris")
    lr = joblib.load(lr_file)
    forest = RandomForestClassifier(n_estimators=25, random_state=0).fit(iris.data, iris.target)
    cancer = load_breast_cancer()
    x_cancer = (cancer.data - cancer.data.mean(axis=0)) / cancer.data.std(axis=0)
    binary = LogisticRegression(max_iter=2000).fit(x_cancer, cancer.target)

    def write(name: str, model: Any) -> Path:
        path = root / f"{name}.json"
        path.write_text(json.dumps(export_model(model)))
        return path

    return {
        "iris": ExportedModel("iris", lr, export_file(lr_file, root / "iris.json"), iris.data),
        "forest": ExportedModel("forest", forest, write("forest", forest), iris.data),
        "cancer": ExportedModel("cancer", binary, write("cancer", binary), x_cancer),
    }


@pytest.fixture(scope="session")
def java_pods(
    java_pod_launcher: Path,
    java_models: dict[str, ExportedModel],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, RunningPod]]:
    """One running pod per exported model, served under the model's name."""
    logs = tmp_path_factory.mktemp("java-pods")
    pods: dict[str, RunningPod] = {}
    try:
        for name, exported in java_models.items():
            pods[name] = start_pod(
                java_pod_launcher, exported.json_file, name, logs / f"{name}.log"
            )
        yield pods
    finally:
        for pod in pods.values():
            pod.terminate()


@pytest.fixture
def java_pod_factory(
    java_pod_launcher: Path, tmp_path: Path
) -> Iterator[Callable[..., RunningPod]]:
    """Starts pods private to one test (for stopping them); stops any left running."""
    started: list[RunningPod] = []

    def make(model_file: Path, name: str, *extra: str) -> RunningPod:
        pod = start_pod(
            java_pod_launcher, model_file, name, tmp_path / f"{name}-{len(started)}.log", *extra
        )
        started.append(pod)
        return pod

    yield make
    for pod in started:
        if pod.proc.poll() is None:
            pod.terminate()
