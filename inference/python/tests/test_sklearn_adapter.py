"""Unit tests of the scikit-learn adapter, the adapter registry and the demo model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from aimp_inference.adapter import framework_for, load_adapter
from aimp_inference.demo import train_iris
from aimp_inference.sklearn_adapter import SklearnAdapter
from aimp_inference.triton_pod import python_lib_env


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_iris(tmp_path_factory.mktemp("iris"))


def test_demo_writes_model_and_schema(iris_model: Path) -> None:
    """train_iris saves a loadable classifier and a schema naming its tensors."""
    schema = json.loads((iris_model.parent / "schema.json").read_text())
    assert [t["name"] for t in schema["inputs"]] == ["input"]
    assert schema["inputs"][0] == {"name": "input", "datatype": "FP64", "shape": [-1, 4]}
    assert [t["name"] for t in schema["outputs"]] == ["label", "probabilities"]
    assert schema["class_names"] == ["setosa", "versicolor", "virginica"]
    assert joblib.load(iris_model).score(*load_iris(return_X_y=True)) > 0.9


def test_iris_specs(iris_model: Path) -> None:
    """The iris adapter takes 4 FP64 features and answers an INT64 label and 3 probabilities."""
    adapter = load_adapter(iris_model, "sklearn")
    assert [(s.name, s.datatype, s.shape) for s in adapter.inputs] == [("input", "FP64", (4,))]
    assert [(s.name, s.datatype, s.shape) for s in adapter.outputs] == [
        ("label", "INT64", (1,)),
        ("probabilities", "FP64", (3,)),
    ]


@settings(max_examples=30, deadline=None)
@given(
    rows=arrays(np.float64, st.tuples(st.integers(1, 16), st.just(4)), elements=st.floats(-10, 10))
)
def test_infer_matches_sklearn(iris_model: Path, rows: np.ndarray) -> None:
    """For any batch, outputs equal the estimator's own predict and predict_proba."""
    model = joblib.load(iris_model)
    out = SklearnAdapter(model).infer({"input": rows})
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(rows), rtol=0, atol=0)
    assert out["label"].dtype == np.int64
    assert out["label"].shape == (len(rows), 1)
    np.testing.assert_array_equal(out["label"][:, 0], model.predict(rows))


def test_string_classes_become_indices() -> None:
    """Classifiers with string classes answer the class index, so the label stays INT64."""
    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = LogisticRegression(max_iter=1000).fit(x, names)
    out = SklearnAdapter(model).infer({"input": x[[0, 149]]})
    assert out["label"][:, 0].tolist() == [0, 2]


def test_regressor_answers_prediction() -> None:
    """A regressor has no label: it answers one FP64 'prediction' per row."""
    x, y = load_iris(return_X_y=True)
    model = LinearRegression().fit(x, y.astype(float))
    adapter = SklearnAdapter(model)
    assert [s.name for s in adapter.outputs] == ["prediction"]
    prediction = adapter.infer({"input": x[:3]})["prediction"]
    np.testing.assert_allclose(prediction[:, 0], model.predict(x[:3]))


def test_unfitted_model_is_rejected() -> None:
    """An estimator that was never fitted is refused with a message saying to fit it."""
    with pytest.raises(ValueError, match="fit it"):
        SklearnAdapter(LogisticRegression())


def test_unknown_framework_and_missing_file(tmp_path: Path, iris_model: Path) -> None:
    """load_adapter names the supported frameworks and the missing file."""
    with pytest.raises(ValueError, match="supported: onnx, python, sklearn"):
        load_adapter(iris_model, "tensorflow")
    with pytest.raises(FileNotFoundError, match=r"nope\.joblib"):
        load_adapter(tmp_path / "nope.joblib")


@pytest.mark.parametrize(
    ("name", "framework"),
    [("m.joblib", "sklearn"), ("m.pkl", "sklearn"), ("M.ONNX", "onnx"), ("a.b.onnx", "onnx")],
)
def test_framework_from_extension(name: str, framework: str) -> None:
    """.joblib and .pkl mean scikit-learn, .onnx means ONNX (case does not matter)."""
    assert framework_for(Path(name)) == framework


@pytest.mark.parametrize("name", ["model.bin", "model", "model.onnx.gz"])
def test_unknown_extension_says_what_to_do(name: str) -> None:
    """Any other extension is refused with the known ones and the --framework way out."""
    with pytest.raises(
        ValueError, match=r"\.joblib \(sklearn\).*--framework onnx\|python\|sklearn"
    ):
        framework_for(Path(name))


def test_framework_argument_wins_over_extension(tmp_path: Path, iris_model: Path) -> None:
    """A joblib file under another name loads when the framework is named."""
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(iris_model.read_bytes())
    with pytest.raises(ValueError, match="cannot tell the framework"):
        load_adapter(renamed)
    assert load_adapter(renamed, "sklearn").batched


def test_python_lib_env_prepends_libdir() -> None:
    """The interpreter's LIBDIR comes first on LD_LIBRARY_PATH and the old entries stay."""
    import sysconfig

    libdir = sysconfig.get_config_var("LIBDIR")
    assert python_lib_env({"LD_LIBRARY_PATH": "/opt/a:/opt/b"}) == os.pathsep.join(
        [libdir, "/opt/a", "/opt/b"]
    )
    assert python_lib_env({}) == libdir
    assert python_lib_env({"LD_LIBRARY_PATH": f"{libdir}:/x"}) == f"{libdir}:/x"
