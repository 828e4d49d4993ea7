"""Integration test: the aimp-triton-pod command serving the iris model through real Triton."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import psutil
import pytest
import tritonclient.http as triton_http

from aimp_core.net import free_port, wait_http_ok
from aimp_inference.demo import train_iris

pytestmark = pytest.mark.integration

POD = str(Path(sys.executable).parent / "aimp-triton-pod")


def test_pod_serves_iris_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The pod answers like predict_proba via tritonclient and exits 0 within 10 s of SIGTERM."""
    model_file = train_iris(tmp_path / "iris")
    http, grpc, metrics = free_port(), free_port(), free_port()
    log = (tmp_path / "pod.log").open("wb")
    proc = subprocess.Popen(
        [
            POD,
            "--model-file",
            str(model_file),
            "--name",
            "iris",
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{http}/v2/models/iris/ready", timeout_s=60)
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert any("tritonserver" in p.name() for p in family)

        rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]])
        client = triton_http.InferenceServerClient(f"127.0.0.1:{http}")
        assert client.get_model_metadata("iris")["outputs"][1]["name"] == "probabilities"
        tensor = triton_http.InferInput("input", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows)
        result = client.infer("iris", [tensor])
        model = joblib.load(model_file)
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), model.predict_proba(rows), atol=1e-6
        )
        assert result.as_numpy("label")[:, 0].tolist() == model.predict(rows).tolist()

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
        _gone, alive = psutil.wait_procs(family[1:], timeout=5)
        assert not alive, f"children still alive after the pod exited: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        print((tmp_path / "pod.log").read_text()[-3000:])
