"""The Java pod over HTTP with tritonclient: metadata, health, inference equal to scikit-learn."""

from __future__ import annotations

import gzip
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration

# The fixtures' classes live in this directory's conftest.py, which pytest's importlib mode
# does not let test modules import; these aliases keep the signatures readable.
RunningPod = Any
ExportedModel = Any

ATOL = 1e-6


def client(pod: RunningPod) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(pod.address, network_timeout=30.0)


def infer(
    pod: RunningPod,
    name: str,
    x: np.ndarray,
    *,
    binary: bool = False,
    datatype: str = "FP64",
    **kwargs: Any,
) -> Any:
    """Run x through the pod with tritonclient and return the InferResult."""
    tensor = triton_http.InferInput("input", list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        triton_http.InferRequestedOutput("probabilities", binary_data=binary),
        triton_http.InferRequestedOutput("label", binary_data=binary),
    ]
    return client(pod).infer(name, [tensor], outputs=outputs, **kwargs)


def expected_labels(exported: ExportedModel, x: np.ndarray) -> np.ndarray:
    """The index of predict's class in classes_, as an [n, 1] column."""
    return np.searchsorted(exported.model.classes_, exported.model.predict(x)).reshape(-1, 1)


def test_server_is_live_and_ready(java_pods: dict[str, RunningPod]) -> None:
    """The health endpoints answer 200 for a started pod."""
    triton = client(java_pods["iris"])
    assert triton.is_server_live()
    assert triton.is_server_ready()


def test_server_metadata_names_the_pod(java_pods: dict[str, RunningPod]) -> None:
    """GET /v2 returns the server's name, version and extensions."""
    meta = client(java_pods["iris"]).get_server_metadata()
    assert meta["name"] == "aimp-java-pod"
    assert meta["version"]
    assert meta["extensions"] == ["binary_tensor_data"]


@pytest.mark.parametrize(("name", "features", "classes"), [("iris", 4, 3), ("cancer", 30, 2)])
def test_model_metadata_describes_tensors(
    java_pods: dict[str, RunningPod], name: str, features: int, classes: int
) -> None:
    """Model metadata (with or without a version) gives the tensors' names, datatypes, shapes."""
    triton = client(java_pods[name])
    for meta in (triton.get_model_metadata(name), triton.get_model_metadata(name, "1")):
        assert meta["name"] == name
        assert meta["versions"] == ["1"]
        assert meta["platform"] == "aimp_sklearn_json"
        assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, features]}]
        assert meta["outputs"] == [
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, classes]},
            {"name": "label", "datatype": "INT64", "shape": [-1, 1]},
        ]


def test_model_ready_only_for_the_served_model(java_pods: dict[str, RunningPod]) -> None:
    """The served model is ready; another name is not."""
    triton = client(java_pods["iris"])
    assert triton.is_model_ready("iris")
    assert triton.is_model_ready("iris", "1")
    assert not triton.is_model_ready("forest")


@pytest.mark.parametrize("name", ["iris", "forest", "cancer"])
def test_infer_matches_predict_proba_on_every_row(
    java_pods: dict[str, RunningPod], java_models: dict[str, ExportedModel], name: str
) -> None:
    """JSON inference over all rows equals predict_proba within 1e-6; the label equals predict."""
    exported = java_models[name]
    result = infer(java_pods[name], name, exported.x, request_id="req-7")
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), exported.model.predict_proba(exported.x), atol=ATOL
    )
    labels = result.as_numpy("label")
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, expected_labels(exported, exported.x))
    assert result.get_response()["id"] == "req-7"
    assert result.get_response()["model_version"] == "1"


@pytest.mark.parametrize("name", ["iris", "forest"])
def test_binary_tensor_extension_matches_json(
    java_pods: dict[str, RunningPod], java_models: dict[str, ExportedModel], name: str
) -> None:
    """tritonclient's default binary tensors (in and out) give the same answers as predict_proba."""
    exported = java_models[name]
    result = infer(java_pods[name], name, exported.x, binary=True)
    assert result.get_output("probabilities")["parameters"]["binary_data_size"] == 150 * 3 * 8
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), exported.model.predict_proba(exported.x), atol=ATOL
    )
    np.testing.assert_array_equal(result.as_numpy("label"), expected_labels(exported, exported.x))


def test_default_outputs_are_binary_when_none_requested(
    java_pods: dict[str, RunningPod], java_models: dict[str, ExportedModel]
) -> None:
    """Without requested outputs tritonclient asks for binary_data_output and gets both outputs."""
    exported = java_models["forest"]
    tensor = triton_http.InferInput("input", list(exported.x.shape), "FP64")
    tensor.set_data_from_numpy(exported.x)
    result = client(java_pods["forest"]).infer("forest", [tensor])
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["probabilities", "label"]
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), exported.model.predict_proba(exported.x), atol=ATOL
    )


@pytest.mark.parametrize("binary", [False, True])
def test_fp32_input_is_read_as_float32(
    java_pods: dict[str, RunningPod], java_models: dict[str, ExportedModel], binary: bool
) -> None:
    """An FP32 tensor gives predict_proba of the float32 data, in JSON and binary form."""
    exported = java_models["iris"]
    x32 = exported.x.astype(np.float32)
    result = infer(java_pods["iris"], "iris", x32, binary=binary, datatype="FP32")
    np.testing.assert_allclose(
        result.as_numpy("probabilities"),
        exported.model.predict_proba(x32.astype(np.float64)),
        atol=ATOL,
    )


def test_int64_input_is_accepted(
    java_pods: dict[str, RunningPod], java_models: dict[str, ExportedModel]
) -> None:
    """An INT64 tensor is converted to float64 before evaluation."""
    x = np.array([[5, 3, 1, 0], [7, 3, 6, 2]], dtype=np.int64)
    result = infer(java_pods["forest"], "forest", x, binary=True, datatype="INT64")
    np.testing.assert_allclose(
        result.as_numpy("probabilities"),
        java_models["forest"].model.predict_proba(x.astype(np.float64)),
        atol=ATOL,
    )


def test_only_requested_outputs_are_returned(java_pods: dict[str, RunningPod]) -> None:
    """Asking for 'label' alone returns no probabilities."""
    x = np.array([[6.2, 2.9, 4.3, 1.3]])
    tensor = triton_http.InferInput("input", [1, 4], "FP64")
    tensor.set_data_from_numpy(x, binary_data=False)
    result = client(java_pods["iris"]).infer(
        "iris", [tensor], outputs=[triton_http.InferRequestedOutput("label", binary_data=False)]
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("label").tolist() == [[1]]


def test_nested_rows_and_empty_batch(java_pods: dict[str, RunningPod]) -> None:
    """Data may be nested per row, and a batch of zero rows returns empty outputs."""
    url = f"{java_pods['iris'].url}/v2/models/iris/infer"
    nested = {
        "inputs": [
            {
                "name": "input",
                "shape": [2, 4],
                "datatype": "FP64",
                "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3, 5.2, 2.3]],
            }
        ]
    }
    body = httpx.post(url, json=nested, timeout=10).json()
    assert body["outputs"][1]["data"] == [0, 2]
    empty = {"inputs": [{"name": "input", "shape": [0, 4], "datatype": "FP64", "data": []}]}
    outputs = httpx.post(url, json=empty, timeout=10).json()["outputs"]
    assert outputs[0]["shape"] == [0, 3]
    assert outputs[0]["data"] == []


def test_compressed_request_and_response(
    java_pods: dict[str, RunningPod], java_models: dict[str, ExportedModel]
) -> None:
    """gzip and deflate request bodies are read, and responses come compressed when asked."""
    exported = java_models["iris"]
    expected = exported.model.predict_proba(exported.x)
    for algorithm in ("gzip", "deflate"):
        result = infer(
            java_pods["iris"],
            "iris",
            exported.x,
            binary=True,
            request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=ATOL)
    raw = httpx.post(
        f"{java_pods['iris'].url}/v2/models/iris/infer",
        content=gzip.compress(
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [300, 4],
                            "datatype": "FP64",
                            "data": exported.x.tolist() * 2,
                        }
                    ]
                }
            ).encode()
        ),
        headers={"Content-Encoding": "gzip", "Accept-Encoding": "gzip"},
        timeout=10,
    )
    assert raw.status_code == 200
    assert raw.headers["content-encoding"] == "gzip"


def test_concurrent_requests_all_answer_correctly(
    java_pods: dict[str, RunningPod], java_models: dict[str, ExportedModel]
) -> None:
    """200 requests from 16 threads each get their own row's probabilities."""
    exported = java_models["forest"]
    expected = exported.model.predict_proba(exported.x)
    url = f"{java_pods['forest'].url}/v2/models/forest/infer"

    def one(i: int) -> bool:
        row = i % len(exported.x)
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "data": exported.x[row].tolist(),
                }
            ]
        }
        got = http.post(url, json=body).json()["outputs"][0]["data"]
        return bool(np.allclose(got, expected[row], atol=ATOL))

    limits = httpx.Limits(max_connections=16)
    with httpx.Client(timeout=10, limits=limits) as http, ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, range(200)))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.data(),
    rows=st.integers(min_value=1, max_value=20),
)
def test_random_inputs_agree_with_sklearn(
    java_pods: dict[str, RunningPod],
    java_models: dict[str, ExportedModel],
    data: st.DataObject,
    rows: int,
) -> None:
    """For arbitrary finite inputs the forest and the regression equal predict_proba within 1e-6."""
    x = data.draw(
        hnp.arrays(
            np.float64,
            (rows, 4),
            elements=st.floats(-20, 20, allow_nan=False, allow_subnormal=False),
        )
    )
    with httpx.Client(timeout=10) as http:
        for name in ("forest", "iris"):
            body = {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [rows, 4],
                        "datatype": "FP64",
                        "data": x.ravel().tolist(),
                    }
                ]
            }
            reply = http.post(f"{java_pods[name].url}/v2/models/{name}/infer", json=body)
            assert reply.status_code == 200, reply.text
            outputs = {o["name"]: o for o in reply.json()["outputs"]}
            proba = np.array(outputs["probabilities"]["data"]).reshape(rows, -1)
            np.testing.assert_allclose(proba, java_models[name].model.predict_proba(x), atol=ATOL)
            assert outputs["label"]["data"] == np.argmax(proba, axis=1).tolist()


def test_wrong_shape_is_400_naming_shapes(java_pods: dict[str, RunningPod]) -> None:
    """A tensor of the wrong width is refused with both shapes in the message."""
    with pytest.raises(InferenceServerException) as caught:
        infer(java_pods["iris"], "iris", np.zeros((2, 3)))
    assert caught.value.status() == "400"
    assert "input 'input' has shape [2,3] but the model needs [-1,4]" in caught.value.message()


def test_wrong_input_name_is_400(java_pods: dict[str, RunningPod]) -> None:
    """An input under another name is refused, naming both names."""
    tensor = triton_http.InferInput("features", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.zeros((1, 4)), binary_data=False)
    with pytest.raises(InferenceServerException) as caught:
        client(java_pods["iris"]).infer("iris", [tensor])
    assert caught.value.status() == "400"
    assert "unexpected input 'features'" in caught.value.message()
    assert "'input'" in caught.value.message()


def tensor_body(data: list[Any], datatype: str = "FP64", **extra: Any) -> bytes:
    """A request body with one [1, 4] input tensor named 'input'."""
    tensor = {"name": "input", "shape": [1, 4], "datatype": datatype, "data": data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"inputs": [', "not valid JSON"),
        (b"", "body is empty"),
        (b"[1, 2]", "must be a JSON object"),
        (tensor_body([1, 2, 3]), "has 3 values but its shape [1,4] needs 4"),
        (tensor_body([1, 2, "x", 4]), "element 2"),
        (tensor_body(["a"], "BYTES"), "datatype 'BYTES'"),
        (tensor_body([1, 2, 3.5, 4], "INT64"), "not an integer"),
        (tensor_body([[[1, 2, 3, 4]]]), "nested deeper than its shape"),
        (b'{"inputs": []}', "needs an 'inputs' list"),
        (tensor_body([1, 2, 3, 4], outputs=[{"name": "score"}]), "unknown output 'score'"),
    ],
)
def test_malformed_requests_are_400_saying_why(
    java_pods: dict[str, RunningPod], body: bytes, fragment: str
) -> None:
    """Malformed JSON and bad tensors get 400 with an {"error"} body naming the problem."""
    reply = httpx.post(f"{java_pods['iris'].url}/v2/models/iris/infer", content=body, timeout=10)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    assert fragment in reply.json()["error"]


def test_binary_size_mismatch_is_400(java_pods: dict[str, RunningPod]) -> None:
    """A binary input whose binary_data_size disagrees with its shape is refused."""
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
    reply = httpx.post(
        f"{java_pods['iris'].url}/v2/models/iris/infer",
        content=header + bytes(16),
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=10,
    )
    assert reply.status_code == 400
    assert "binary_data_size 16" in reply.json()["error"]


def test_unknown_model_is_404(java_pods: dict[str, RunningPod]) -> None:
    """Inference and metadata for a model the pod does not serve are 404 naming the served one."""
    with pytest.raises(InferenceServerException) as caught:
        infer(java_pods["iris"], "nope", np.zeros((1, 4)))
    assert caught.value.status() == "404"
    assert "unknown model 'nope'" in caught.value.message()
    reply = httpx.get(f"{java_pods['iris'].url}/v2/models/nope", timeout=10)
    assert reply.status_code == 404
    assert "this server serves model 'iris'" in reply.json()["error"]


def test_unknown_version_is_404(java_pods: dict[str, RunningPod]) -> None:
    """Only version 1 exists; another version is 404, while version 1 answers."""
    assert infer(java_pods["iris"], "iris", np.zeros((1, 4)), model_version="1").as_numpy(
        "label"
    ).shape == (1, 1)
    with pytest.raises(InferenceServerException) as caught:
        infer(java_pods["iris"], "iris", np.zeros((1, 4)), model_version="2")
    assert caught.value.status() == "404"
    assert "no version '2'" in caught.value.message()


def test_unknown_route_is_404_and_wrong_method_405(java_pods: dict[str, RunningPod]) -> None:
    """Paths outside the protocol are 404 and a GET on infer is 405 with Allow: POST."""
    base = java_pods["iris"].url
    missing = httpx.get(f"{base}/v1/models", timeout=10)
    assert missing.status_code == 404
    assert "no route for GET /v1/models" in missing.json()["error"]
    wrong = httpx.get(f"{base}/v2/models/iris/infer", timeout=10)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert "use POST" in wrong.json()["error"]


def walk_without_cast(tree: dict[str, Any], row: np.ndarray) -> list[float]:
    """A tree's leaf distribution for row, comparing float64 inputs (the wrong way) on purpose."""
    node = 0
    while tree["left"][node] != -1:
        go_left = row[tree["feature"][node]] <= tree["threshold"][node]
        node = tree["left"][node] if go_left else tree["right"][node]
    return list(tree["value"][node])


def test_tree_comparisons_cast_inputs_to_float32(
    java_pods: dict[str, RunningPod], java_models: dict[str, ExportedModel]
) -> None:
    """Inputs one float64 step beside each root threshold take scikit-learn's float32 branch."""
    exported = java_models["forest"]
    doc = json.loads(exported.json_file.read_text())
    rows = []
    for tree in doc["trees"]:
        threshold, feature = tree["threshold"][0], tree["feature"][0]
        rounded = float(np.float32(threshold))
        if rounded == threshold:
            continue
        # float32(x) lands on the same side as float32(threshold), x itself on the other.
        x = np.nextafter(threshold, np.inf if rounded < threshold else -np.inf)
        row = exported.x[60].copy()
        row[feature] = x
        rows.append(row)
    x = np.array(rows)
    naive = np.array([np.mean([walk_without_cast(t, r) for t in doc["trees"]], axis=0) for r in x])
    expected = exported.model.predict_proba(x)
    assert np.abs(naive - expected).max() > 1e-3, "these rows must tell the float32 cast apart"
    result = infer(java_pods["forest"], "forest", x)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=ATOL)


def test_small_requests_answer_without_nagle_delay(java_pods: dict[str, RunningPod]) -> None:
    """Sequential one-row calls on one connection average far below the 40 ms ACK delay."""
    url = f"{java_pods['iris'].url}/v2/models/iris/infer"
    body = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5, 3, 1, 0]}]
    }
    with httpx.Client(timeout=10) as http:
        for _ in range(20):
            http.post(url, json=body)
        begin = time.perf_counter()
        for _ in range(50):
            assert http.post(url, json=body).status_code == 200
        mean_ms = (time.perf_counter() - begin) / 50 * 1000
    assert mean_ms < 25, f"{mean_ms:.1f} ms per call"
