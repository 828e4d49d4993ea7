"""The model adapter interface: one small seam between model formats and Triton.

A format (scikit-learn, ONNX, a custom Python handler) implements
:class:`ModelAdapter`: it names its input and output tensors, says whether its
first dimension is a batch, and turns named input arrays into named output
arrays. The Triton binding in :mod:`aimp_inference.triton_pod` only ever talks
to this interface.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

#: Open Inference Protocol datatype names for the numpy dtypes adapters use.
OIP_DATATYPES: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor as Triton serves it.

    ``shape`` leaves out the batch dimension when the adapter is batched; -1 marks
    a dimension of any size.
    """

    name: str
    dtype: np.dtype[np.generic]
    shape: tuple[int, ...]

    @property
    def datatype(self) -> str:
        """The Open Inference Protocol datatype name (``FP64``, ``INT64``...)."""
        return OIP_DATATYPES[self.dtype.name]


Arrays = Mapping[str, npt.NDArray[np.generic]]


class ModelAdapter(Protocol):
    """A loaded model that Triton can serve."""

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    @property
    def batched(self) -> bool:
        """True when every tensor's first dimension is a batch of rows Triton may gather."""
        ...

    def infer(self, inputs: Arrays) -> dict[str, npt.NDArray[np.generic]]:
        """Outputs for named inputs; batched adapters get ``(n, *spec.shape)`` arrays."""
        ...


Loader = Callable[[Path], ModelAdapter]


def _load_sklearn(path: Path) -> ModelAdapter:
    from aimp_inference.sklearn_adapter import SklearnAdapter

    return SklearnAdapter.load(path)


def _load_onnx(path: Path) -> ModelAdapter:
    from aimp_inference.onnx_adapter import OnnxAdapter

    return OnnxAdapter.load(path)


def _load_python(path: Path) -> ModelAdapter:
    from aimp_inference.python_adapter import PythonAdapter

    return PythonAdapter.load(path)


#: Model formats this runtime can load, by the name deploy-control stores.
LOADERS: dict[str, Loader] = {
    "sklearn": _load_sklearn,
    "onnx": _load_onnx,
    "python": _load_python,
}

#: The framework a model file's extension implies when none is named.
FRAMEWORK_BY_SUFFIX: dict[str, str] = {
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".onnx": "onnx",
    ".py": "python",
}


def framework_for(path: Path) -> str:
    """The framework a model file's extension names, or a ValueError saying what to do."""
    framework = FRAMEWORK_BY_SUFFIX.get(path.suffix.lower())
    if framework is None:
        known = ", ".join(f"{s} ({f})" for s, f in FRAMEWORK_BY_SUFFIX.items())
        raise ValueError(
            f"cannot tell the framework of model file {path.name!r} from its extension "
            f"{path.suffix or '(none)'!r}; known extensions: {known}. Rename the file or "
            f"name the framework (--framework {'|'.join(sorted(LOADERS))})"
        )
    return framework


def load_adapter(path: Path, framework: str | None = None) -> ModelAdapter:
    """Load ``path`` with the adapter for ``framework`` (default: from the file extension)."""
    if framework is None:
        framework = framework_for(path)
    loader = LOADERS.get(framework)
    if loader is None:
        supported = ", ".join(sorted(LOADERS))
        raise ValueError(f"unknown model framework {framework!r}; supported: {supported}")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist or is not a file")
    return loader(path)
