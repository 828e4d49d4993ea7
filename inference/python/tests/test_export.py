"""The portable JSON export reproduces scikit-learn's probabilities when evaluated as documented."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from aimp_inference.export import UnsupportedModel, export_model


def evaluate(doc: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """A direct reading of the format's documented semantics (the C++/Java pods' oracle)."""
    if doc["kind"] == "logistic_regression":
        coef, intercept = np.array(doc["coef"]), np.array(doc["intercept"])
        z = x @ coef.T + intercept
        if coef.shape[0] == 1:
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1 - p1, p1], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True))
    out = np.zeros((x.shape[0], len(doc["classes"])))
    for tree in doc["trees"]:
        for row in range(x.shape[0]):
            node = 0
            while tree["left"][node] != -1:
                go_left = np.float32(x[row, tree["feature"][node]]) <= tree["threshold"][node]
                node = tree["left"][node] if go_left else tree["right"][node]
            out[row] += tree["value"][node]
    return out / len(doc["trees"])


@pytest.mark.parametrize(
    "model",
    [
        LogisticRegression(max_iter=1000),
        DecisionTreeClassifier(random_state=0),
        RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0),
    ],
)
def test_export_matches_predict_proba_on_iris(model: Any) -> None:
    """Multiclass logistic regression and trees export to the same probabilities."""
    iris = load_iris()
    model.fit(iris.data, iris.target)
    doc = export_model(model)
    np.testing.assert_allclose(evaluate(doc, iris.data), model.predict_proba(iris.data), atol=1e-9)


def test_binary_logistic_regression_exports_as_sigmoid() -> None:
    """A two-class logistic regression (one coefficient row) evaluates as a sigmoid."""
    data = load_breast_cancer()
    x = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    model = LogisticRegression(max_iter=2000).fit(x, data.target)
    doc = export_model(model)
    assert len(doc["coef"]) == 1
    np.testing.assert_allclose(evaluate(doc, x), model.predict_proba(x), atol=1e-9)


def test_unsupported_model_is_refused_by_name() -> None:
    """A model type with no portable form is refused with its type named."""
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    with pytest.raises(UnsupportedModel, match="LinearRegression"):
        export_model(model)
