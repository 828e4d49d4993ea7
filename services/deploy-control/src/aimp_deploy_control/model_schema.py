"""A model's input and output schema, and the check of a declared schema against the file.

A schema names each tensor as the Open Inference Protocol (KServe v2) shows it in
``GET /v2/models/{name}``: a name, a datatype (``FP32``, ``FP64``, ``INT64``, ``BYTES``...)
and a shape that includes the batch dimension, ``-1`` marking a dimension of any size
(``[-1, 4]``: any number of rows of 4 features).

Everything here is pure: :func:`mismatches` compares a declared schema with the one
read from the model file (by :mod:`aimp_deploy_control.inspection`) and returns one
message per wrong field, naming it and saying what the model expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field, field_validator

#: The Open Inference Protocol's tensor datatypes.
Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
#: A tensor may have at most this many dimensions (Triton's own limit is far above
#: anything a model uses; this bounds what a schema may declare).
MAX_RANK = 16
#: Tensors per side a schema may list.
MAX_TENSORS = 256


class TensorSchema(BaseModel):
    name: str = Field(min_length=1, max_length=256, description="The tensor's name.")
    datatype: Datatype = Field(description="Open Inference Protocol datatype, e.g. FP32.")
    shape: list[int] = Field(
        min_length=1,
        max_length=MAX_RANK,
        description="Dimensions including the batch one; -1 is a dimension of any size.",
    )

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        bad = [d for d in shape if d < -1 or d == 0]
        if bad:
            raise ValueError(
                f"shape {shape}: every dimension is a positive size or -1 (any size), got {bad}"
            )
        return shape


class ModelSchema(BaseModel):
    inputs: list[TensorSchema] = Field(min_length=1, max_length=MAX_TENSORS)
    outputs: list[TensorSchema] | None = Field(
        default=None,
        max_length=MAX_TENSORS,
        description="Omit to take the outputs from the model file.",
    )

    @field_validator("inputs", "outputs")
    @classmethod
    def _unique(cls, tensors: list[TensorSchema] | None) -> list[TensorSchema] | None:
        names = [t.name for t in tensors or []]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tensor names must be unique, repeated: {dupes}")
        return tensors


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _tensor_mismatch(
    role: str, declared: TensorSchema, actual: TensorSchema, feature_input: str | None
) -> list[str]:
    where = f"{role} {declared.name!r}"
    out = []
    if declared.datatype != actual.datatype:
        out.append(f"{where} datatype {declared.datatype}: the model's is {actual.datatype}")
    if len(declared.shape) != len(actual.shape):
        out.append(
            f"{where} shape {_shape(declared.shape)}: the model's has {len(actual.shape)} "
            f"dimensions, {_shape(actual.shape)}"
        )
        return out
    for i, (want, have) in enumerate(zip(declared.shape, actual.shape, strict=True)):
        if have == -1 or want == have:
            continue  # a declared size narrows a free dimension: that is allowed
        if want == -1:
            what = f"dimension {i} is fixed to {have} in the model"
        else:
            what = f"dimension {i} is {have} in the model, not {want}"
        if role == "input" and i == len(actual.shape) - 1 and actual.name == feature_input:
            # A scikit-learn model's input: say it in the model's own words.
            what = f"the model expects {have} features"
        out.append(f"{where} shape {_shape(declared.shape)}: {what} ({_shape(actual.shape)})")
    return out


def _side_mismatches(
    role: str,
    declared: Sequence[TensorSchema],
    actual: Sequence[TensorSchema],
    feature_input: str | None = None,
) -> list[str]:
    by_name = {t.name: t for t in actual}
    known = ", ".join(repr(t.name) for t in actual)
    out = []
    for tensor in declared:
        model_tensor = by_name.get(tensor.name)
        if model_tensor is None:
            out.append(f"{role} {tensor.name!r} is not in the model; its {role}s are {known}")
        else:
            out.extend(_tensor_mismatch(role, tensor, model_tensor, feature_input))
    declared_names = {t.name for t in declared}
    for tensor in actual:
        if tensor.name not in declared_names:
            out.append(
                f"{role} {tensor.name!r} ({tensor.datatype} {_shape(tensor.shape)}) is in the "
                f"model but not declared"
            )
    return out


def mismatches(
    declared: ModelSchema, actual: ModelSchema, *, feature_input: str | None = None
) -> list[str]:
    """Every way ``declared`` differs from the model's own schema ``actual`` (empty: match).

    Names must match exactly on each side (declared outputs may be omitted), datatypes
    exactly, ranks exactly; a dimension the model fixes must be declared with that size,
    and a free one may be declared as -1 or as a size. ``feature_input`` names the input
    whose last dimension counts features (scikit-learn's), so its message says so.
    """
    out = _side_mismatches("input", declared.inputs, actual.inputs, feature_input)
    if declared.outputs is not None:
        out += _side_mismatches("output", declared.outputs, actual.outputs or [])
    return out


def effective(declared: ModelSchema | None, actual: ModelSchema) -> ModelSchema:
    """The schema stored with a version: the declared one (outputs filled in from the
    model when left out), or the model's own when nothing was declared."""
    if declared is None:
        return actual
    if declared.outputs is None:
        return ModelSchema(inputs=declared.inputs, outputs=actual.outputs)
    return declared
