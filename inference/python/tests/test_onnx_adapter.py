"""Unit tests of the ONNX adapter: the shape layout, real graphs from skl2onnx and onnx.helper.

Tolerance: a graph converted from scikit-learn computes in float32 (FP32 inputs,
weights and softmax) where scikit-learn computes in float64. float32 carries about
7 significant digits (eps 1.2e-7), so a probability in [0, 1] reached through a
few dot products and an exp is off by ~1e-6 at worst on inputs in [-10, 10]
(measured: 2e-7 on iris, 7e-7 on random rows). 1e-5 absolute leaves a tenfold
margin and still catches a wrong weight, class order or missing softmax.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from aimp_inference.adapter import load_adapter
from aimp_inference.demo import MODEL_FILE, train_iris, train_iris_onnx
from aimp_inference.onnx_adapter import GraphTensor, OnnxAdapter, layout

#: Largest absolute difference allowed between float32 ONNX and float64 scikit-learn
#: probabilities (see the module docstring).
FP32_ATOL = 1e-5


@pytest.fixture(scope="module")
def iris_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_iris_onnx(tmp_path_factory.mktemp("iris-onnx"))


@pytest.fixture(scope="module")
def iris_sklearn(tmp_path_factory: pytest.TempPathFactory) -> LogisticRegression:
    model: LogisticRegression = joblib.load(train_iris(tmp_path_factory.mktemp("iris-skl")))
    return model


def _save(graph: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(graph.SerializeToString())
    return path


def _specs(adapter: OnnxAdapter) -> tuple[list[Any], list[Any]]:
    return (
        [(s.name, s.datatype, s.shape) for s in adapter.inputs],
        [(s.name, s.datatype, s.shape) for s in adapter.outputs],
    )


# -- the layout rules (pure) ---------------------------------------------------------------


def test_layout_batches_when_every_first_dim_is_free() -> None:
    """Free first dims batch; the rest is the served shape, free dims -1, rank 1 gets [1]."""
    batched, ins, outs = layout(
        [GraphTensor("x", "tensor(float)", (None, 4)), GraphTensor("t", "tensor(int64)", ("N",))],
        [GraphTensor("y", "tensor(double)", ("N", "seq", 3))],
    )
    assert batched
    assert [(b.spec.name, b.spec.datatype, b.spec.shape, b.expanded) for b in ins] == [
        ("x", "FP32", (4,), False),
        ("t", "INT64", (1,), True),
    ]
    assert [(b.spec.shape, b.expanded) for b in outs] == [((-1, 3), False)]


def test_layout_does_not_batch_a_fixed_first_dim() -> None:
    """One tensor with a fixed first dim (or a scalar) turns batching off for the model."""
    batched, ins, outs = layout(
        [GraphTensor("x", "tensor(float)", (None, 4))],
        [GraphTensor("y", "tensor(float)", (1, 4)), GraphTensor("s", "tensor(bool)", ())],
    )
    assert not batched
    assert [(b.spec.shape, b.expanded) for b in ins] == [((-1, 4), False)]
    assert [(b.spec.shape, b.spec.datatype, b.expanded) for b in outs] == [
        ((1, 4), "FP32", False),
        ((1,), "BOOL", True),
    ]


def test_layout_refuses_maps_with_the_zipmap_hint() -> None:
    """skl2onnx's default probability output (a sequence of maps) is refused with the fix."""
    with pytest.raises(ValueError, match=r"'output_probability'.*zipmap': False"):
        layout(
            [GraphTensor("X", "tensor(float)", (None, 4))],
            [GraphTensor("output_probability", "seq(map(int64,tensor(float)))", ())],
        )
    with pytest.raises(ValueError, match="string"):
        layout(
            [GraphTensor("text", "tensor(string)", (None,))],
            [GraphTensor("y", "tensor(float)", (None,))],
        )
    with pytest.raises(ValueError, match="at least one input and one output"):
        layout([], [GraphTensor("y", "tensor(float)", (None,))])


# -- a real graph converted from scikit-learn ----------------------------------------------


def test_demo_onnx_specs_and_schema(iris_onnx: Path) -> None:
    """The demo graph serves input/label/probabilities under the graph's names and types."""
    adapter = load_adapter(iris_onnx)  # picked by the .onnx extension
    assert isinstance(adapter, OnnxAdapter) and adapter.batched
    assert [a.name for a in adapter.session.get_inputs()] == ["input"]
    assert [a.name for a in adapter.session.get_outputs()] == ["label", "probabilities"]
    assert _specs(adapter) == (
        [("input", "FP32", (4,))],
        [("label", "INT64", (1,)), ("probabilities", "FP32", (3,))],
    )
    schema = json.loads((iris_onnx.parent / "schema.json").read_text())
    assert schema["framework"] == "onnx"
    assert schema["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert not (iris_onnx.parent / MODEL_FILE).exists()


def test_iris_agrees_with_sklearn_on_the_data_set(
    iris_onnx: Path, iris_sklearn: LogisticRegression
) -> None:
    """On the 150 iris rows the ONNX labels equal scikit-learn's and probabilities agree."""
    x = load_iris().data
    out = OnnxAdapter.load(iris_onnx).infer({"input": x.astype(np.float32)})
    assert out["label"].shape == (150, 1)
    # PyTriton checks output types with np.issubdtype, stricter than dtype equality.
    assert np.issubdtype(out["label"].dtype, np.int64)
    assert out["probabilities"].dtype == np.float32
    np.testing.assert_array_equal(out["label"][:, 0], iris_sklearn.predict(x))
    np.testing.assert_allclose(
        out["probabilities"], iris_sklearn.predict_proba(x), rtol=0, atol=FP32_ATOL
    )


@settings(max_examples=40, deadline=None)
@given(
    rows=arrays(
        np.float32, st.tuples(st.integers(1, 32), st.just(4)), elements=st.floats(-10, 10, width=32)
    )
)
def test_infer_matches_sklearn_within_fp32_tolerance(
    iris_onnx: Path, iris_sklearn: LogisticRegression, rows: np.ndarray
) -> None:
    """For any batch, probabilities are within 1e-5 and labels agree unless it is a near tie."""
    adapter = OnnxAdapter.load(iris_onnx)
    out = adapter.infer({"input": rows})
    expected = iris_sklearn.predict_proba(rows.astype(np.float64))
    np.testing.assert_allclose(out["probabilities"], expected, rtol=0, atol=FP32_ATOL)
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * FP32_ATOL
    np.testing.assert_array_equal(out["label"][clear, 0], iris_sklearn.predict(rows)[clear])


def test_forest_and_regressor_convert_and_agree(tmp_path: Path) -> None:
    """A random forest and a regressor (output [N, 1], not expanded) agree within 1e-5."""
    x, y = load_iris(return_X_y=True)
    x32 = x.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(x, y)
    graph = to_onnx(forest, x32[:1], options={id(forest): {"zipmap": False}})
    adapter = OnnxAdapter.load(_save(graph, tmp_path / "forest.onnx"))
    out = adapter.infer({"X": x32})
    np.testing.assert_allclose(
        out["probabilities"], forest.predict_proba(x), rtol=0, atol=FP32_ATOL
    )
    linear = LinearRegression().fit(x, y.astype(float))
    adapter = OnnxAdapter.load(_save(to_onnx(linear, x32[:1]), tmp_path / "linear.onnx"))
    assert _specs(adapter)[1] == [("variable", "FP32", (1,))]
    prediction = adapter.infer({"X": x32[:5]})["variable"]
    assert prediction.shape == (5, 1)
    np.testing.assert_allclose(prediction[:, 0], linear.predict(x[:5]), rtol=0, atol=FP32_ATOL)


def test_zipmap_graph_is_refused(tmp_path: Path) -> None:
    """A classifier converted with skl2onnx's defaults is refused with the way to fix it."""
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    path = _save(to_onnx(model, x[:1].astype(np.float32)), tmp_path / "zipmap.onnx")
    with pytest.raises(ValueError, match="zipmap"):
        load_adapter(path, "onnx")


# -- hand-built graphs: several inputs, no batch dimension ---------------------------------


def _graph(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
) -> onnx.ModelProto:
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_two_inputs_batched(tmp_path: Path) -> None:
    """A graph with two named inputs is fed by name; INT32 and FP64 keep their types."""
    graph = _graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Cast", ["sum"], ["as_int"], to=TensorProto.INT32),
        ],
        [
            helper.make_tensor_value_info("a", TensorProto.DOUBLE, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.DOUBLE, ["N", 2]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.DOUBLE, ["N", 2]),
            helper.make_tensor_value_info("as_int", TensorProto.INT32, ["N", 2]),
        ],
    )
    adapter = OnnxAdapter.load(_save(graph, tmp_path / "add.onnx"))
    assert adapter.batched
    assert _specs(adapter) == (
        [("a", "FP64", (2,)), ("b", "FP64", (2,))],
        [("sum", "FP64", (2,)), ("as_int", "INT32", (2,))],
    )
    out = adapter.infer({"a": np.array([[1.5, 2.0]]), "b": np.array([[1.0, -5.0]])})
    np.testing.assert_array_equal(out["sum"], [[2.5, -3.0]])
    assert out["as_int"].dtype == np.int32 and out["as_int"].tolist() == [[2, -3]]
    with pytest.raises(ValueError, match=r"missing model inputs \['b'\]"):
        adapter.infer({"a": np.zeros((1, 2))})


def test_unbatched_graph_with_a_scalar_output(tmp_path: Path) -> None:
    """A fixed [2, 3] input is served whole (no batching); a scalar output comes back as [1]."""
    graph = _graph(
        [helper.make_node("ReduceSum", ["m"], ["total"], keepdims=0)],
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [])],
    )
    adapter = OnnxAdapter.load(_save(graph, tmp_path / "sum.onnx"))
    assert not adapter.batched
    assert _specs(adapter) == ([("m", "FP32", (2, 3))], [("total", "FP32", (1,))])
    out = adapter.infer({"m": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert out["total"].shape == (1,) and out["total"][0] == 15.0


def test_unloadable_file_is_a_value_error(tmp_path: Path) -> None:
    """Bytes that are not an ONNX graph are refused with the file named."""
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"definitely not protobuf")
    with pytest.raises(ValueError, match=r"broken\.onnx is not an ONNX model"):
        load_adapter(bad)
