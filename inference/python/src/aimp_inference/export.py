"""Export fitted scikit-learn models to a portable JSON document for the C++ and Java pods.

Format ``aimp-sklearn-json/1`` (one JSON object):

common fields
    ``format``: ``"aimp-sklearn-json/1"``; ``kind``: see below; ``n_features``: int;
    ``classes``: list of class labels as JSON numbers or strings (order = probability
    columns); ``input_name`` ``"input"``; outputs ``"probabilities"`` (FP64,
    ``[n, n_classes]``) and ``"label"`` (INT64, ``[n, 1]``: the index of the most
    probable class, ties to the lowest index as numpy's argmax does).

``kind = "logistic_regression"``
    ``coef``: ``[k][n_features]``, ``intercept``: ``[k]``. If ``k == 1`` (two classes)
    ``p1 = sigmoid(x·coef[0] + intercept[0])`` and probabilities are ``[1-p1, p1]``;
    otherwise probabilities are ``softmax(x·coef[j] + intercept[j])`` over j (computed
    with the max subtracted first, as scikit-learn does). Inputs are float64.

``kind = "tree_ensemble"``
    ``trees``: list of trees, each ``{"left": [...], "right": [...], "feature": [...],
    "threshold": [...], "value": [[...n_classes]]}`` indexed by node; a node is a leaf
    when ``left[i] == -1``. At an inner node go left when
    ``float32(x[feature[i]]) <= threshold[i]`` (scikit-learn casts inputs to float32
    for trees; the threshold stays float64). ``value[leaf]`` is the leaf's class
    distribution, normalised to sum to 1. The ensemble's probabilities are the mean
    of its trees' leaf distributions (a single DecisionTreeClassifier is one tree).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

FORMAT = "aimp-sklearn-json/1"


class UnsupportedModel(ValueError):
    """The model's type has no portable form yet."""


def _classes(model: Any) -> list[Any]:
    return [c.item() if isinstance(c, np.generic) else c for c in model.classes_]


def _tree(estimator: DecisionTreeClassifier) -> dict[str, Any]:
    tree = estimator.tree_
    value = tree.value[:, 0, :].astype(np.float64)
    totals = value.sum(axis=1, keepdims=True)
    totals[totals == 0] = 1.0
    return {
        "left": tree.children_left.tolist(),
        "right": tree.children_right.tolist(),
        "feature": tree.feature.tolist(),
        "threshold": tree.threshold.tolist(),
        "value": (value / totals).tolist(),
    }


def export_model(model: Any) -> dict[str, Any]:
    """The portable JSON document of a fitted classifier (see the module docstring)."""
    if not isinstance(model, LogisticRegression | DecisionTreeClassifier | RandomForestClassifier):
        raise UnsupportedModel(
            f"{type(model).__name__} cannot be exported yet; supported: LogisticRegression, "
            "DecisionTreeClassifier, RandomForestClassifier"
        )
    common = {
        "format": FORMAT,
        "n_features": int(model.n_features_in_),
        "classes": _classes(model),
        "input_name": "input",
    }
    if isinstance(model, LogisticRegression):
        return {
            **common,
            "kind": "logistic_regression",
            "coef": model.coef_.astype(np.float64).tolist(),
            "intercept": model.intercept_.astype(np.float64).tolist(),
        }
    if isinstance(model, DecisionTreeClassifier):
        return {**common, "kind": "tree_ensemble", "trees": [_tree(model)]}
    return {**common, "kind": "tree_ensemble", "trees": [_tree(t) for t in model.estimators_]}


def export_file(model_file: Path, out_file: Path) -> Path:
    """Load a joblib model and write its portable JSON next to it (or where asked)."""
    document = export_model(joblib.load(model_file))
    out_file.write_text(json.dumps(document))
    return out_file


def main(argv: list[str] | None = None) -> None:
    """``python -m aimp_inference.export MODEL.joblib OUT.json``"""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m aimp_inference.export MODEL.joblib OUT.json")
    print(export_file(Path(args[0]), Path(args[1])))


if __name__ == "__main__":
    main()
