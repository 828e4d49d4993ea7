"""Reads a model file's schema, in a subprocess of its own (``python -m`` this module).

    python -m aimp_deploy_control.inspect_model FRAMEWORK MODEL_FILE  < declared-schema-json

Loading a joblib file runs pickled code and a custom handler is user code, so neither
ever runs inside deploy-control's server process: :mod:`aimp_deploy_control.inspection`
starts this with a timeout and a bare environment. It prints one JSON object on stdout,
``{"schema": {...}}`` (exit 0) or ``{"error": "..."}`` (exit 1).

The schema is what the Triton pod will serve, as ``GET /v2/models/{name}`` shows it
(batch dimension included as -1). The rules mirror aimp_inference's adapters
(sklearn_adapter.py, onnx_adapter.py, python_adapter.py); deploy-control does not
import that package (services are independent), so a change there must be made here.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: scikit-learn adapter's tensor names (aimp_inference.sklearn_adapter).
SK_INPUT, SK_LABEL, SK_PROBA, SK_PREDICTION = "input", "label", "probabilities", "prediction"

ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}
NUMPY_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}

Tensor = dict[str, Any]


class Refused(Exception):
    """The file is not a model of this framework that the Triton pod can serve."""


def tensor(name: str, datatype: str, shape: list[int]) -> Tensor:
    return {"name": name, "datatype": datatype, "shape": shape}


def sklearn_schema(path: Path) -> dict[str, list[Tensor]]:
    import joblib

    try:
        model = joblib.load(path)
    except Exception as exc:  # unpickling raises anything at all
        raise Refused(
            f"not a joblib file scikit-learn can load: {type(exc).__name__}: {exc}"
        ) from None
    kind = type(model).__name__
    if not callable(getattr(model, "predict", None)):
        raise Refused(f"{kind} has no predict(); save a fitted scikit-learn estimator")
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, int | np.integer) or n_features < 1:
        raise Refused(f"{kind} has no n_features_in_; fit it before saving it")
    classes = getattr(model, "classes_", None)
    if classes is None:
        n_outputs = int(getattr(model, "n_outputs_", 1))
        outputs = [tensor(SK_PREDICTION, "FP64", [-1, n_outputs])]
    else:
        outputs = [tensor(SK_LABEL, "INT64", [-1, 1])]
        if callable(getattr(model, "predict_proba", None)):
            outputs.append(tensor(SK_PROBA, "FP64", [-1, len(classes)]))
    return {"inputs": [tensor(SK_INPUT, "FP64", [-1, int(n_features)])], "outputs": outputs}


def _free(dim: Any) -> bool:
    return not isinstance(dim, int) or dim < 0


def onnx_schema(path: Path) -> dict[str, list[Tensor]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ONNX Runtime raises its own Exception subclasses
        raise Refused(f"not an ONNX model ONNX Runtime can load: {str(exc)[:300]}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    every = [*inputs, *outputs]
    batched = all(len(a.shape) >= 1 and _free(a.shape[0]) for a in every)

    def served(arg: Any, role: str) -> Tensor:
        datatype = ONNX_TYPES.get(str(arg.type))
        if datatype is None:
            hint = (
                " (a scikit-learn classifier converted with skl2onnx needs "
                "options={id(model): {'zipmap': False}})"
                if str(arg.type).startswith(("seq(", "map("))
                else ""
            )
            raise Refused(
                f"{role} {arg.name!r} has type {arg.type}, which the Triton pod cannot serve{hint}"
            )
        dims = list(arg.shape[1:] if batched else arg.shape)
        shape = [d if isinstance(d, int) and d >= 0 else -1 for d in dims] or [1]
        return tensor(str(arg.name), datatype, [-1, *shape] if batched else shape)

    return {
        "inputs": [served(a, "input") for a in inputs],
        "outputs": [served(a, "output") for a in outputs],
    }


def python_schema(path: Path, declared: dict[str, Any] | None) -> dict[str, list[Tensor]]:
    """Import the handler and call ``predict`` once with zeros shaped by the schema."""
    if not declared or not declared.get("outputs"):
        raise Refused(
            "a custom Python handler needs a declared schema with its inputs and outputs "
            "(they cannot be read from a .py file)"
        )
    for t in [*declared["inputs"], *declared["outputs"]]:
        if t["datatype"] not in NUMPY_TYPES:
            raise Refused(f"tensor {t['name']!r}: datatype {t['datatype']} is not served yet")
    # The loader is named: an upload's temporary file has no .py suffix to infer it from.
    loader = importlib.machinery.SourceFileLoader("aimp_handler", str(path))
    spec = importlib.util.spec_from_file_location("aimp_handler", path, loader=loader)
    if spec is None or spec.loader is None:
        raise Refused("cannot import the handler file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # user code raises anything
        raise Refused(f"importing the handler failed: {type(exc).__name__}: {exc}") from None
    predict = getattr(module, "predict", None)
    if not callable(predict):
        raise Refused("the handler defines no predict(inputs) function")
    sample = {
        t["name"]: np.zeros([1 if d == -1 else d for d in t["shape"]], NUMPY_TYPES[t["datatype"]])
        for t in declared["inputs"]
    }
    try:
        result = predict(sample)
    except Exception as exc:  # user code raises anything
        raise Refused(f"predict() failed on a zero input: {type(exc).__name__}: {exc}") from None
    if not isinstance(result, dict):
        raise Refused(f"predict() must return a dict of arrays, got {type(result).__name__}")
    outputs = []
    for t in declared["outputs"]:
        if t["name"] not in result:
            raise Refused(f"predict() returned no output {t['name']!r}; it returned {list(result)}")
        array = np.asarray(result[t["name"]])
        if array.ndim != len(t["shape"]):
            raise Refused(
                f"output {t['name']!r}: predict() returned {array.ndim} dimensions "
                f"{list(array.shape)}, the schema declares {t['shape']}"
            )
        datatype = next((k for k, v in NUMPY_TYPES.items() if np.dtype(v) == array.dtype), None)
        # Free dimensions stay free; fixed ones are what predict() really returned.
        shape = [-1 if d == -1 else int(n) for d, n in zip(t["shape"], array.shape, strict=True)]
        outputs.append(tensor(t["name"], datatype or str(array.dtype), shape))
    # The handler's outputs as it returned them; inputs are what the schema declares.
    return {"inputs": declared["inputs"], "outputs": outputs}


def inspect(framework: str, path: Path, declared: dict[str, Any] | None) -> dict[str, Any]:
    if framework == "sklearn":
        return sklearn_schema(path)
    if framework == "onnx":
        return onnx_schema(path)
    if framework == "python":
        return python_schema(path, declared)
    raise Refused(f"framework {framework!r} cannot be inspected")


def main(argv: list[str] | None = None) -> None:
    framework, model_file = (argv if argv is not None else sys.argv[1:])[:2]
    raw = sys.stdin.read().strip()
    declared = json.loads(raw) if raw else None
    try:
        # User code may print: keep stdout for the one JSON answer.
        with contextlib.redirect_stdout(sys.stderr):
            schema = inspect(framework, Path(model_file), declared)
    except Refused as exc:
        print(json.dumps({"error": str(exc)[:1000]}))
        sys.exit(1)
    print(json.dumps({"schema": schema}))


if __name__ == "__main__":
    main()
