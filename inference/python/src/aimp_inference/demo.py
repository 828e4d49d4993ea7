"""The demo model: a logistic regression on the iris data set (bundled, no download).

``python -m aimp_inference.demo OUT_DIR`` writes ``model.joblib`` and
``schema.json`` into OUT_DIR and prints the model file's path.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from aimp_inference.sklearn_adapter import SklearnAdapter

MODEL_FILE = "model.joblib"
SCHEMA_FILE = "schema.json"
#: Fixed so every run trains the same model (same coefficients, same answers).
RANDOM_STATE = 0


def schema_of(adapter: SklearnAdapter, *, feature_names: list[str], classes: list[str]) -> Any:
    """A JSON description of the model's tensors, in Open Inference Protocol terms."""

    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": s.datatype, "shape": [-1, *s.shape]} for s in specs]

    return {
        "framework": "sklearn",
        "inputs": tensors(adapter.inputs),
        "outputs": tensors(adapter.outputs),
        "feature_names": feature_names,
        "class_names": classes,
    }


def train_iris(out_dir: Path) -> Path:
    """Train the iris classifier, save model and schema under ``out_dir``, return the model path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    iris = load_iris()
    model = LogisticRegression(max_iter=1000, random_state=RANDOM_STATE)
    model.fit(iris.data, iris.target)
    model_path = out_dir / MODEL_FILE
    joblib.dump(model, model_path)
    schema = schema_of(
        SklearnAdapter(model),
        feature_names=[str(n) for n in iris.feature_names],
        classes=[str(n) for n in iris.target_names],
    )
    (out_dir / SCHEMA_FILE).write_text(json.dumps(schema, indent=2) + "\n")
    return model_path


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m aimp_inference.demo OUT_DIR")
    print(train_iris(Path(args[0])))


if __name__ == "__main__":
    main()
