"""Property tests: the C++ pod equals scikit-learn on any rows, including rows on split edges."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.http as triton_http
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import ModelFiles, Pod

pytestmark = pytest.mark.integration

Rows = npt.NDArray[np.float64]


def _infer_binary(pod: Pod, model: str, rows: Rows) -> tuple[Rows, npt.NDArray[np.int64]]:
    """Probabilities and labels for rows sent as exact float64 bytes."""
    tensor = triton_http.InferInput("input", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    client = triton_http.InferenceServerClient(pod.address, network_timeout=10.0)
    result = client.infer(model, [tensor])
    return result.as_numpy("probabilities"), result.as_numpy("label")[:, 0]


def _edge_values(threshold: float) -> list[float]:
    """A split threshold and the float64 and float32 values right around it."""
    t32 = np.float32(threshold)
    return [
        threshold,
        float(np.nextafter(threshold, -np.inf)),
        float(np.nextafter(threshold, np.inf)),
        float(t32),
        float(np.nextafter(t32, np.float32(-np.inf))),
        float(np.nextafter(t32, np.float32(np.inf))),
    ]


def _feature_values(model: Any, feature: int) -> st.SearchStrategy[float]:
    thresholds = sorted(
        {
            float(t)
            for tree in model.estimators_
            for f, t in zip(tree.tree_.feature, tree.tree_.threshold, strict=True)
            if f == feature
        }
    )
    edges = [v for t in thresholds for v in _edge_values(t)]
    return st.one_of(
        st.sampled_from(edges), st.floats(min_value=-1.0, max_value=10.0, allow_nan=False)
    )


def _check(pod: Pod, name: str, files: ModelFiles, rows: Rows) -> None:
    model: Any = files.model
    proba, labels = _infer_binary(pod, name, rows)
    expected = model.predict_proba(rows)
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(labels, np.argmax(expected, axis=1))


@pytest.fixture(scope="module")
def forest_rows(iris_forest: ModelFiles) -> st.SearchStrategy[Rows]:
    row = st.tuples(*(_feature_values(iris_forest.model, f) for f in range(4)))
    return st.lists(row, min_size=1, max_size=20).map(lambda r: np.array(r, dtype=np.float64))


def test_forest_matches_sklearn_on_split_edges(
    forest_pod: Pod, iris_forest: ModelFiles, forest_rows: st.SearchStrategy[Rows]
) -> None:
    """Rows on and one float64/float32 step beside every split threshold branch as in sklearn."""

    @settings(max_examples=60, deadline=None)
    @given(rows=forest_rows)
    def check(rows: Rows) -> None:
        _check(forest_pod, "forest", iris_forest, rows)

    check()


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=4, max_size=4),
        min_size=1,
        max_size=20,
    )
)
def test_logistic_regression_matches_sklearn_on_any_rows(
    iris_pod: Pod, iris_logistic: ModelFiles, rows: list[list[float]]
) -> None:
    """Any finite rows, far outside the training data too, get predict_proba within 1e-6."""
    _check(iris_pod, "iris", iris_logistic, np.array(rows, dtype=np.float64))
