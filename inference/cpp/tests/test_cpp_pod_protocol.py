"""The C++ pod speaks the Open Inference Protocol and answers like scikit-learn."""

from __future__ import annotations

import json
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from .conftest import ModelFiles, Pod

pytestmark = pytest.mark.integration

Rows = npt.NDArray[np.float64]


def _client(pod: Pod) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(pod.address, network_timeout=10.0)


def _infer(
    pod: Pod,
    model: str,
    rows: npt.NDArray[Any],
    *,
    binary: bool,
    datatype: str = "FP64",
    outputs: tuple[str, ...] = ("probabilities", "label"),
    version: str = "",
) -> Any:
    tensor = triton_http.InferInput("input", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary)
    requested = [triton_http.InferRequestedOutput(n, binary_data=binary) for n in outputs]
    return _client(pod).infer(model, [tensor], outputs=requested, model_version=version)


def _label_index(files: ModelFiles, rows: Rows) -> npt.NDArray[np.intp]:
    index: npt.NDArray[np.intp] = np.searchsorted(files.model.classes_, files.model.predict(rows))
    return index


def _post_infer(pod: Pod, body: bytes | str, model: str = "iris", **headers: str) -> httpx.Response:
    return httpx.post(
        f"{pod.url}/v2/models/{model}/infer", content=body, headers=headers, timeout=10.0
    )


def _request(name: str, shape: list[int], data: Any, datatype: str = "FP64") -> str:
    return json.dumps(
        {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}
    )


def test_health_endpoints(iris_pod: Pod) -> None:
    """Live and ready both answer 200 while the pod serves."""
    client = _client(iris_pod)
    assert client.is_server_live()
    assert client.is_server_ready()


def test_server_metadata(iris_pod: Pod) -> None:
    """GET /v2 names the server and lists the binary tensor extension it implements."""
    meta = _client(iris_pod).get_server_metadata()
    assert meta["name"] == "aimp-cpp-pod"
    assert meta["version"] == "0.1.0"
    assert meta["extensions"] == ["binary_tensor_data"]


def test_model_metadata(iris_pod: Pod, forest_pod: Pod) -> None:
    """Model metadata gives the tensors with the model's sizes, with or without a version."""
    meta = _client(iris_pod).get_model_metadata("iris")
    assert meta["name"] == "iris"
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        {"name": "label", "datatype": "INT64", "shape": [-1, 1]},
    ]
    assert _client(iris_pod).get_model_metadata("iris", "1") == meta
    forest = _client(forest_pod).get_model_metadata("forest")
    assert forest["parameters"]["model_kind"] == "tree_ensemble"


def test_model_ready(iris_pod: Pod) -> None:
    """The served model is ready under its name and version 1; other names and versions are not."""
    client = _client(iris_pod)
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "1")
    assert not client.is_model_ready("other")
    assert not client.is_model_ready("iris", "2")


@pytest.mark.parametrize("pod_name", ["iris_pod", "forest_pod"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_agrees_with_sklearn(
    pod_name: str, binary: bool, request: pytest.FixtureRequest, iris_rows: Rows
) -> None:
    """All 150 iris rows get predict_proba's probabilities within 1e-6 and predict's class index."""
    pod: Pod = request.getfixturevalue(pod_name)
    files: ModelFiles = request.getfixturevalue(
        "iris_logistic" if pod_name == "iris_pod" else "iris_forest"
    )
    model_name = "iris" if pod_name == "iris_pod" else "forest"
    result = _infer(pod, model_name, iris_rows, binary=binary)
    proba = result.as_numpy("probabilities")
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba, files.model.predict_proba(iris_rows), rtol=0, atol=1e-6)
    labels = result.as_numpy("label")
    assert labels.shape == (150, 1)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels[:, 0], _label_index(files, iris_rows))


def test_fp32_input_is_read_as_float32(
    iris_pod: Pod, iris_logistic: ModelFiles, iris_rows: Rows
) -> None:
    """An FP32 input gives what scikit-learn gives for the same float32 values."""
    rows32 = iris_rows.astype(np.float32)
    for binary in (False, True):
        proba = _infer(iris_pod, "iris", rows32, binary=binary, datatype="FP32").as_numpy(
            "probabilities"
        )
        expected = iris_logistic.model.predict_proba(rows32.astype(np.float64))
        np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-6)


def test_only_requested_outputs_are_returned(iris_pod: Pod, iris_rows: Rows) -> None:
    """Asking for 'label' alone returns no probabilities."""
    result = _infer(iris_pod, "iris", iris_rows[:5], binary=False, outputs=("label",))
    assert result.as_numpy("probabilities") is None
    assert result.as_numpy("label").shape == (5, 1)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]


def test_versioned_infer_route(iris_pod: Pod, iris_rows: Rows) -> None:
    """Version 1 answers through /versions/1/infer; version 2 is 404."""
    result = _infer(iris_pod, "iris", iris_rows[:3], binary=False, version="1")
    assert result.get_response()["model_version"] == "1"
    with pytest.raises(InferenceServerException) as failure:
        _infer(iris_pod, "iris", iris_rows[:3], binary=False, version="2")
    assert failure.value.status() == "404"
    assert "no version '2'" in failure.value.message()


def test_request_id_is_echoed(iris_pod: Pod) -> None:
    """The response carries the request's id and the model's name and version."""
    body = json.loads(_request("input", [1, 4], [5.1, 3.5, 1.4, 0.2]))
    body["id"] = "req-42"
    reply = _post_infer(iris_pod, json.dumps(body))
    assert reply.status_code == 200
    assert reply.json()["id"] == "req-42"
    assert reply.json()["model_name"] == "iris"
    assert reply.json()["model_version"] == "1"


def test_nested_and_integer_json_data(iris_pod: Pod, iris_logistic: ModelFiles) -> None:
    """Nested row lists and INT64 data are read as the same float64 rows."""
    rows = [[5, 3, 1, 0], [6, 3, 5, 2]]
    reply = _post_infer(iris_pod, _request("input", [2, 4], rows, "INT64"))
    assert reply.status_code == 200, reply.text
    proba = np.array(reply.json()["outputs"][0]["data"]).reshape(2, 3)
    expected = iris_logistic.model.predict_proba(np.array(rows, dtype=np.float64))
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-6)


def test_empty_batch(iris_pod: Pod) -> None:
    """Zero rows give empty outputs of the right shapes."""
    reply = _post_infer(iris_pod, _request("input", [0, 4], []))
    assert reply.status_code == 200, reply.text
    outputs = reply.json()["outputs"]
    assert [(o["shape"], o["data"]) for o in outputs] == [([0, 3], []), ([0, 1], [])]


def test_concurrent_requests_all_answer_correctly(
    forest_pod: Pod, iris_forest: ModelFiles, iris_rows: Rows
) -> None:
    """Requests from 16 threads at once each get the probabilities of their own rows."""
    expected = iris_forest.model.predict_proba(iris_rows)

    def call(i: int) -> bool:
        rows = iris_rows[i % 150 : i % 150 + 5]
        with httpx.Client(timeout=10.0) as http:
            for _ in range(10):
                reply = http.post(
                    f"{forest_pod.url}/v2/models/forest/infer",
                    content=_request("input", list(rows.shape), rows.ravel().tolist()),
                )
                proba = np.array(reply.json()["outputs"][0]["data"]).reshape(-1, 3)
                if not np.allclose(proba, expected[i % 150 : i % 150 + 5], atol=1e-6):
                    return False
        return True

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert all(pool.map(call, range(0, 160, 10)))


# --- errors -----------------------------------------------------------------------------


def _error(reply: httpx.Response, status: int) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error"}
    message = body["error"]
    assert isinstance(message, str)
    return message


def test_wrong_shape_is_400_naming_both_shapes(iris_pod: Pod) -> None:
    """A [2,3] input is refused with its shape and the model's [-1,4]."""
    message = _error(_post_infer(iris_pod, _request("input", [2, 3], [1, 2, 3, 4, 5, 6])), 400)
    assert message == "input 'input' has shape [2,3] but the model needs [-1,4]"


def test_wrong_shape_through_tritonclient(iris_pod: Pod) -> None:
    """tritonclient shows the server's 400 message."""
    with pytest.raises(InferenceServerException) as failure:
        _infer(iris_pod, "iris", np.zeros((2, 3)), binary=False)
    assert failure.value.status() == "400"
    assert "has shape [2,3] but the model needs [-1,4]" in failure.value.message()


def test_wrong_input_name_is_400(iris_pod: Pod) -> None:
    """An input under another name is refused, naming the model's input."""
    message = _error(_post_infer(iris_pod, _request("features", [1, 4], [1, 2, 3, 4])), 400)
    assert "unknown input 'features'" in message
    assert "'input'" in message


def test_malformed_json_is_400(iris_pod: Pod) -> None:
    """A body that is not JSON is refused with the parser's position."""
    message = _error(_post_infer(iris_pod, '{"inputs": [}'), 400)
    assert message.startswith(
        "the request body is not valid JSON: parse error at line 1, column 13"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[]", "must be a JSON object with an 'inputs' list"),
        ('{"inputs": []}', "needs an 'inputs' list"),
        (_request("input", [2, 4], [1, 2, 3]), "has 3 values but its shape [2,4] needs 8"),
        (_request("input", [1, 4], [1, 2, "x", 4]), "element 2 is a string"),
        (_request("input", [1, 4], [1, 2, 3, 4], "BYTES"), "datatype BYTES"),
        (_request("input", [1, 4], [1.5, 2, 3, 4], "INT32"), "element 0 is not an integer"),
        (_request("input", [1, 4], [300, 2, 3, 4], "UINT8"), "element 0 is out of range"),
        (_request("input", [1, 4], [True, 2, 3, 4]), "element 0 is a boolean"),
        (_request("input", [-1, 4], []), "dimensions must be non-negative integers"),
        (_request("input", [4], [1, 2, 3, 4]), "has shape [4] but the model needs [-1,4]"),
        (
            _request("input", [10**12, 4], [1, 2, 3, 4]),
            "has shape [1000000000000,4], 4000000000000 values, more than a body of",
        ),
        (
            json.dumps(
                {"inputs": json.loads(_request("input", [1, 4], [1, 2, 3, 4]))["inputs"] * 2}
            ),
            "takes one input 'input' but the request has 2",
        ),
        (
            json.dumps(
                {
                    **json.loads(_request("input", [1, 4], [1, 2, 3, 4])),
                    "outputs": [{"name": "scores"}],
                }
            ),
            "unknown output 'scores'",
        ),
    ],
)
def test_bad_requests_are_400_with_the_problem(iris_pod: Pod, body: str, expected: str) -> None:
    """Each malformed request gets 400 and a message saying what is wrong."""
    assert expected in _error(_post_infer(iris_pod, body), 400)


def test_non_finite_binary_input_is_400(iris_pod: Pod) -> None:
    """NaN in binary FP64 data is refused, as scikit-learn refuses it."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 32},
                }
            ]
        }
    ).encode()
    body = header + struct.pack("<4d", 1.0, float("nan"), 3.0, 4.0)
    reply = _post_infer(iris_pod, body, **{"Inference-Header-Content-Length": str(len(header))})
    assert "element 1 is NaN or infinite" in _error(reply, 400)


def test_binary_size_mismatch_is_400(iris_pod: Pod) -> None:
    """A binary_data_size that does not fit the shape is refused."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    reply = _post_infer(
        iris_pod, header + bytes(16), **{"Inference-Header-Content-Length": str(len(header))}
    )
    assert "binary_data_size 16 but shape [1,4] of FP64 needs 32 bytes" in _error(reply, 400)


def test_unknown_model_is_404(iris_pod: Pod) -> None:
    """Metadata, readiness and inference of an unknown model are 404 naming the served one."""
    message = _error(httpx.get(f"{iris_pod.url}/v2/models/nope", timeout=5), 404)
    assert message == "unknown model 'nope'; this server serves 'iris'"
    _error(httpx.get(f"{iris_pod.url}/v2/models/nope/ready", timeout=5), 404)
    _error(_post_infer(iris_pod, _request("input", [1, 4], [1, 2, 3, 4]), model="nope"), 404)


def test_unknown_route_is_404_and_wrong_method_405(iris_pod: Pod) -> None:
    """An unknown path is 404, a known path with the wrong method 405, both with {"error"}."""
    assert "no route for GET /v1/models" in _error(
        httpx.get(f"{iris_pod.url}/v1/models", timeout=5), 404
    )
    reply = httpx.get(f"{iris_pod.url}/v2/models/iris/infer", timeout=5)
    assert "GET is not allowed" in _error(reply, 405)
    assert reply.headers["allow"] == "POST"
    assert "use GET" in _error(httpx.post(f"{iris_pod.url}/v2/health/live", timeout=5), 405)


def test_json_replies_are_not_compressed(iris_pod: Pod) -> None:
    """Replies go out uncompressed even when the client accepts gzip and brotli."""
    reply = httpx.get(
        f"{iris_pod.url}/v2/models/iris", headers={"Accept-Encoding": "gzip, br"}, timeout=5
    )
    assert reply.status_code == 200
    assert "content-encoding" not in reply.headers
