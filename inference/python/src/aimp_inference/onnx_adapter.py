"""ONNX models run by ONNX Runtime on the CPU, behind the :class:`ModelAdapter` interface.

Tensor names, element types and shapes come from the graph itself (ONNX Runtime's
session metadata), and Triton serves them under the same names. How the graph's
shapes become Triton's is decided by :func:`layout` (pure, tested alone):

* **batched** when every input and output has a first dimension of no fixed size
  (``None`` or a symbol such as ``"N"``): Triton may gather rows from several calls
  (up to ``MAX_BATCH_SIZE``) and the served shape is the rest of the dimensions;
* otherwise **unbatched**: the served shape is the whole shape and Triton hands
  over one call at a time;
* a dimension of no fixed size is served as -1;
* Triton needs at least one dimension per tensor, so a tensor with none left (a
  rank-1 batched tensor such as skl2onnx's ``label`` of shape ``[N]``, or a scalar)
  is served with a trailing dimension of 1 (``[N, 1]``) and reshaped on the way
  in and out.

Only numeric and boolean tensors are served; strings, sequences and maps are
refused with a message saying how to export the model instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from aimp_inference.adapter import Arrays, TensorSpec

#: ONNX Runtime's element type names and the numpy dtypes they map to.
ONNX_DTYPES: dict[str, type[np.generic]] = {
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(float16)": np.float16,
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
}
#: ONNX Runtime on the CPU only (the pods' GPU path is Triton's own backends).
PROVIDERS = ["CPUExecutionProvider"]
#: ONNX Runtime's log level: errors only, so its warnings do not break the JSON logs.
ORT_LOG_SEVERITY_ERROR = 3

Dim = int | str | None


@dataclass(frozen=True)
class GraphTensor:
    """One graph input or output as ONNX Runtime describes it."""

    name: str
    type: str
    shape: tuple[Dim, ...]


@dataclass(frozen=True)
class Binding:
    """A graph tensor and the way Triton serves it."""

    spec: TensorSpec
    #: Served with a trailing dimension of 1 that the graph does not have.
    expanded: bool


def _free(dim: Dim) -> bool:
    return not isinstance(dim, int) or dim < 0


def _dtype(tensor: GraphTensor, role: str) -> np.dtype[np.generic]:
    scalar = ONNX_DTYPES.get(tensor.type)
    if scalar is not None:
        return np.dtype(scalar)
    if tensor.type.startswith(("seq(", "map(")):
        hint = (
            "; a scikit-learn classifier converted with skl2onnx needs "
            "options={id(model): {'zipmap': False}} so probabilities are a tensor"
        )
    elif tensor.type == "tensor(string)":
        hint = "; string (BYTES) tensors are not served yet"
    else:
        hint = ""
    supported = ", ".join(ONNX_DTYPES)
    raise ValueError(
        f"{role} {tensor.name!r} has type {tensor.type}, which Triton cannot serve from "
        f"this adapter (supported: {supported}){hint}"
    )


def layout(
    inputs: Sequence[GraphTensor], outputs: Sequence[GraphTensor]
) -> tuple[bool, list[Binding], list[Binding]]:
    """Whether to batch, and each input's and output's served spec (module docstring)."""
    if not inputs or not outputs:
        raise ValueError("the ONNX graph must have at least one input and one output")
    every = [*inputs, *outputs]
    batched = all(len(t.shape) >= 1 and _free(t.shape[0]) for t in every)

    def bind(tensor: GraphTensor, role: str) -> Binding:
        dims = tensor.shape[1:] if batched else tensor.shape
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)
        spec = TensorSpec(tensor.name, _dtype(tensor, role), shape or (1,))
        return Binding(spec, expanded=not shape)

    return (
        batched,
        [bind(t, "input") for t in inputs],
        [bind(t, "output") for t in outputs],
    )


def _graph_tensor(arg: Any) -> GraphTensor:
    return GraphTensor(str(arg.name), str(arg.type), tuple(arg.shape))


class OnnxAdapter:
    """Serves one ONNX graph through an ONNX Runtime session on the CPU."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self._batched, self._inputs, self._outputs = layout(
            [_graph_tensor(a) for a in session.get_inputs()],
            [_graph_tensor(a) for a in session.get_outputs()],
        )
        self._output_names = [b.spec.name for b in self._outputs]

    @classmethod
    def load(cls, path: Path) -> OnnxAdapter:
        """Open an ``.onnx`` file; a file ONNX Runtime cannot load raises ValueError."""
        options = ort.SessionOptions()
        options.log_severity_level = ORT_LOG_SEVERITY_ERROR
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=PROVIDERS)
        except Exception as exc:  # ONNX Runtime raises its own Exception subclasses
            raise ValueError(
                f"{path} is not an ONNX model ONNX Runtime can load: {str(exc)[:300]}"
            ) from None
        return cls(session)

    @property
    def inputs(self) -> list[TensorSpec]:
        return [b.spec for b in self._inputs]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [b.spec for b in self._outputs]

    @property
    def batched(self) -> bool:
        return self._batched

    def infer(self, inputs: Arrays) -> dict[str, npt.NDArray[np.generic]]:
        missing = [b.spec.name for b in self._inputs if b.spec.name not in inputs]
        if missing:
            raise ValueError(f"missing model inputs {missing}; the graph needs all of them")
        feeds: dict[str, npt.NDArray[np.generic]] = {}
        for b in self._inputs:
            array = np.asarray(inputs[b.spec.name], dtype=b.spec.dtype)
            feeds[b.spec.name] = array.reshape(array.shape[:-1]) if b.expanded else array
        results = self.session.run(self._output_names, feeds)
        out: dict[str, npt.NDArray[np.generic]] = {}
        for b, result in zip(self._outputs, results, strict=True):
            # ONNX Runtime may answer int64 as numpy's "long long" type, which PyTriton's
            # output check (np.issubdtype against np.int64) refuses; cast to the spec's type.
            array = np.asarray(result, dtype=b.spec.dtype)
            out[b.spec.name] = array.reshape(*array.shape, 1) if b.expanded else array
        return out
