"""The model adapter interface: one small seam between model formats and Triton.

A format (scikit-learn today, ONNX later) implements :class:`ModelAdapter`:
it names its input and output tensors and turns a batch of inputs into a dict
of output arrays. The Triton binding in :mod:`aimp_inference.triton_pod` only
ever talks to this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

#: Open Inference Protocol datatype names for the numpy dtypes adapters use.
OIP_DATATYPES: dict[str, str] = {"float64": "FP64", "float32": "FP32", "int64": "INT64"}


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor, with its per-row shape (the batch dimension is not included)."""

    name: str
    dtype: np.dtype[np.generic]
    shape: tuple[int, ...]

    @property
    def datatype(self) -> str:
        """The Open Inference Protocol datatype name (``FP64``, ``INT64``...)."""
        return OIP_DATATYPES[self.dtype.name]


class ModelAdapter(Protocol):
    """A loaded model that Triton can serve."""

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    def infer(self, batch: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[np.generic]]:
        """Outputs for a batch of rows shaped ``(n, *inputs[0].shape)``."""
        ...


Loader = Callable[[Path], ModelAdapter]


def _load_sklearn(path: Path) -> ModelAdapter:
    from aimp_inference.sklearn_adapter import SklearnAdapter

    return SklearnAdapter.load(path)


#: Model formats this runtime can load, by the name deploy-control stores.
LOADERS: dict[str, Loader] = {"sklearn": _load_sklearn}


def load_adapter(path: Path, framework: str = "sklearn") -> ModelAdapter:
    """Load ``path`` with the adapter for ``framework``, or explain what is supported."""
    loader = LOADERS.get(framework)
    if loader is None:
        supported = ", ".join(sorted(LOADERS))
        raise ValueError(f"unknown model framework {framework!r}; supported: {supported}")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist or is not a file")
    return loader(path)
