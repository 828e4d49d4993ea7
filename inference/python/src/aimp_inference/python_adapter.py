"""A custom Python handler behind the :class:`ModelAdapter` interface.

The handler is a ``.py`` file defining::

    def predict(inputs: dict[str, numpy.ndarray]) -> dict[str, numpy.ndarray]: ...

Its tensors come from the schema declared with it, which deploy-control writes beside
the file as ``<stem>.schema.json`` (``{"inputs": [...], "outputs": [...]}``, each tensor
``{"name", "datatype", "shape"}``, shapes with the batch dimension, -1 for any size).
When every tensor's first dimension is -1 the handler is **batched**: Triton may gather
rows of several calls into one ``predict`` call, and each output must have one row per
input row. Otherwise each call reaches ``predict`` as it came.

Numeric and boolean tensors are served; BYTES is refused (deploy-control refuses it at
upload too).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aimp_inference.adapter import OIP_DATATYPES, Arrays, TensorSpec

#: Open Inference Protocol datatype name -> numpy dtype (the reverse of OIP_DATATYPES).
DTYPES: dict[str, np.dtype[np.generic]] = {v: np.dtype(k) for k, v in OIP_DATATYPES.items()}

Predict = Callable[[dict[str, npt.NDArray[Any]]], Any]


def schema_path(handler: Path) -> Path:
    return handler.with_suffix(".schema.json")


def _specs(tensors: list[dict[str, Any]], batched: bool, role: str) -> list[TensorSpec]:
    out = []
    for t in tensors:
        dtype = DTYPES.get(str(t["datatype"]))
        if dtype is None:
            raise ValueError(
                f"{role} {t['name']!r}: datatype {t['datatype']} is not served by a Python "
                f"handler (supported: {', '.join(DTYPES)})"
            )
        shape = [int(d) for d in t["shape"]]
        out.append(TensorSpec(str(t["name"]), dtype, tuple(shape[1:] if batched else shape)))
    return out


class PythonAdapter:
    """Serves a handler's ``predict`` with the tensors its schema declares."""

    def __init__(self, predict: Predict, schema: dict[str, Any]) -> None:
        inputs, outputs = schema.get("inputs") or [], schema.get("outputs") or []
        if not inputs or not outputs:
            raise ValueError("a Python handler's schema must declare inputs and outputs")
        every = [*inputs, *outputs]
        self._batched = all(len(t["shape"]) >= 2 and int(t["shape"][0]) == -1 for t in every)
        self._inputs = _specs(inputs, self._batched, "input")
        self._outputs = _specs(outputs, self._batched, "output")
        self._predict = predict

    @classmethod
    def load(cls, path: Path) -> PythonAdapter:
        """Import the handler (it runs its module code) and read its schema file."""
        schema_file = schema_path(path)
        try:
            schema = json.loads(schema_file.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the handler's schema {schema_file}: {exc}") from None
        # The loader is named, so a file without a .py suffix imports too.
        name = f"aimp_handler_{path.stem}"
        loader = importlib.machinery.SourceFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, path, loader=loader)
        if spec is None or spec.loader is None:
            raise ValueError(f"{path} cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # user code raises anything
            raise ValueError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
        predict = getattr(module, "predict", None)
        if not callable(predict):
            raise ValueError(f"{path} defines no predict(inputs) function")
        return cls(predict, schema)

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @property
    def batched(self) -> bool:
        return self._batched

    def infer(self, inputs: Arrays) -> dict[str, npt.NDArray[np.generic]]:
        feeds = {s.name: np.asarray(inputs[s.name], dtype=s.dtype) for s in self._inputs}
        result = self._predict(feeds)
        if not isinstance(result, dict):
            raise ValueError(f"predict() returned {type(result).__name__}, not a dict of arrays")
        out: dict[str, npt.NDArray[np.generic]] = {}
        for s in self._outputs:
            if s.name not in result:
                raise ValueError(f"predict() returned no output {s.name!r} (got {list(result)})")
            out[s.name] = np.asarray(result[s.name], dtype=s.dtype)
        return out
