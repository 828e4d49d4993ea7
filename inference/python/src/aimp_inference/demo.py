"""The demo model: a logistic regression on the iris data set (bundled, no download).

``python -m aimp_inference.demo OUT_DIR [--format sklearn|onnx]`` writes
``model.joblib`` (or ``model.onnx``) and ``schema.json`` into OUT_DIR and prints
the model file's path. Give each format its own directory: both write schema.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from aimp_inference.adapter import ModelAdapter
from aimp_inference.sklearn_adapter import INPUT, LABEL, PROBABILITIES, SklearnAdapter

MODEL_FILE = "model.joblib"
ONNX_MODEL_FILE = "model.onnx"
SCHEMA_FILE = "schema.json"
#: Fixed so every run trains the same model (same coefficients, same answers).
RANDOM_STATE = 0
#: ONNX opsets the demo graph is written for: fixed so that a newer skl2onnx writes the
#: same graph, and old enough (ONNX 1.12, 2022) for any current runtime to load.
ONNX_OPSETS = {"": 17, "ai.onnx.ml": 3}


def schema_of(
    adapter: ModelAdapter, *, framework: str, feature_names: list[str], classes: list[str]
) -> Any:
    """A JSON description of the model's tensors, in Open Inference Protocol terms."""

    def tensors(specs: Any) -> list[dict[str, Any]]:
        batch = [-1] if adapter.batched else []
        return [
            {"name": s.name, "datatype": s.datatype, "shape": [*batch, *s.shape]} for s in specs
        ]

    return {
        "framework": framework,
        "inputs": tensors(adapter.inputs),
        "outputs": tensors(adapter.outputs),
        "feature_names": feature_names,
        "class_names": classes,
    }


def _fit_iris() -> tuple[LogisticRegression, Any]:
    iris = load_iris()
    model = LogisticRegression(max_iter=1000, random_state=RANDOM_STATE)
    model.fit(iris.data, iris.target)
    return model, iris


def _write_schema(out_dir: Path, adapter: ModelAdapter, framework: str, iris: Any) -> None:
    schema = schema_of(
        adapter,
        framework=framework,
        feature_names=[str(n) for n in iris.feature_names],
        classes=[str(n) for n in iris.target_names],
    )
    (out_dir / SCHEMA_FILE).write_text(json.dumps(schema, indent=2) + "\n")


def train_iris(out_dir: Path) -> Path:
    """Train the iris classifier, save model and schema under ``out_dir``, return the model path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model, iris = _fit_iris()
    model_path = out_dir / MODEL_FILE
    joblib.dump(model, model_path)
    _write_schema(out_dir, SklearnAdapter(model), "sklearn", iris)
    return model_path


def train_iris_onnx(out_dir: Path) -> Path:
    """The same classifier as :func:`train_iris` as an ONNX graph (float32) in ``model.onnx``.

    Tensors: ``input`` (FP32, ``[-1, 4]``), ``label`` (INT64, ``[-1]`` in the graph,
    served as ``[-1, 1]``) and ``probabilities`` (FP32, ``[-1, 3]``). Needs skl2onnx,
    a development dependency of the workspace.
    """
    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
    except ImportError:
        raise RuntimeError(
            "train_iris_onnx needs skl2onnx (a workspace dev dependency): "
            "run `uv sync --all-packages` in the repository"
        ) from None
    from aimp_inference.onnx_adapter import OnnxAdapter

    out_dir.mkdir(parents=True, exist_ok=True)
    model, iris = _fit_iris()
    n_features, n_classes = iris.data.shape[1], len(iris.target_names)
    graph = to_onnx(
        model,
        initial_types=[(INPUT, FloatTensorType([None, n_features]))],
        final_types=[
            (LABEL, Int64TensorType([None])),
            (PROBABILITIES, FloatTensorType([None, n_classes])),
        ],
        # Probabilities as a tensor, not skl2onnx's default list of {class: p} maps.
        options={id(model): {"zipmap": False}},
        target_opset=ONNX_OPSETS,
    )
    model_path = out_dir / ONNX_MODEL_FILE
    model_path.write_bytes(graph.SerializeToString())
    _write_schema(out_dir, OnnxAdapter.load(model_path), "onnx", iris)
    return model_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aimp_inference.demo")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--format", choices=["sklearn", "onnx"], default="sklearn")
    args = parser.parse_args(argv)
    train = train_iris_onnx if args.format == "onnx" else train_iris
    print(train(args.out_dir))


if __name__ == "__main__":
    main()
