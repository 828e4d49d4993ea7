"""The schema check (pure): a schema matches itself, and every changed field is named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aimp_deploy_control.model_schema import ModelSchema, TensorSchema, effective, mismatches

DATATYPES = ["BOOL", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]

dims = st.lists(st.one_of(st.just(-1), st.integers(1, 64)), min_size=1, max_size=4)


@st.composite
def tensors(draw: st.DrawFn, prefix: str) -> list[TensorSchema]:
    n = draw(st.integers(1, 4))
    return [
        TensorSchema(
            name=f"{prefix}{i}", datatype=draw(st.sampled_from(DATATYPES)), shape=draw(dims)
        )
        for i in range(n)
    ]


@st.composite
def schemas(draw: st.DrawFn) -> ModelSchema:
    return ModelSchema(inputs=draw(tensors("in")), outputs=draw(tensors("out")))


@given(schemas())
def test_a_schema_matches_itself(schema: ModelSchema) -> None:
    """The model's own schema, declared back, has no mismatch."""
    assert mismatches(schema, schema) == []


@given(schemas(), st.data())
def test_a_changed_fixed_dimension_is_named(schema: ModelSchema, data: st.DataObject) -> None:
    """Changing one fixed dimension of one input gives a message naming that input."""
    fixed = [(t, i) for t in schema.inputs for i, d in enumerate(t.shape) if d != -1]
    if not fixed:
        return
    tensor, i = data.draw(st.sampled_from(fixed))
    declared = schema.model_copy(deep=True)
    target = next(t for t in declared.inputs if t.name == tensor.name)
    target.shape[i] = target.shape[i] + 1
    wrong = mismatches(declared, schema)
    assert len(wrong) == 1 and wrong[0].startswith(f"input {tensor.name!r} shape")
    assert f"dimension {i} is {tensor.shape[i]} in the model" in wrong[0]


@given(schemas())
def test_a_free_dimension_may_be_declared_with_a_size(schema: ModelSchema) -> None:
    """Declaring a size where the model takes any size narrows it and is accepted."""
    declared = schema.model_copy(deep=True)
    for t in declared.inputs:
        t.shape = [3 if d == -1 else d for d in t.shape]
    assert mismatches(declared, schema) == []


def test_each_kind_of_mismatch_has_its_own_message() -> None:
    """Datatype, rank, names and a fixed dimension declared free are each explained."""
    model = ModelSchema(
        inputs=[TensorSchema(name="x", datatype="FP32", shape=[-1, 4])],
        outputs=[TensorSchema(name="y", datatype="FP32", shape=[-1, 2])],
    )
    declared = ModelSchema(
        inputs=[
            TensorSchema(name="x", datatype="FP64", shape=[-1, -1]),
            TensorSchema(name="z", datatype="FP32", shape=[-1]),
        ],
        outputs=[TensorSchema(name="y", datatype="FP32", shape=[-1])],
    )
    assert mismatches(declared, model) == [
        "input 'x' datatype FP64: the model's is FP32",
        "input 'x' shape [-1, -1]: dimension 1 is fixed to 4 in the model ([-1, 4])",
        "input 'z' is not in the model; its inputs are 'x'",
        "output 'y' shape [-1]: the model's has 2 dimensions, [-1, 2]",
    ]
    features = ModelSchema(inputs=[TensorSchema(name="x", datatype="FP32", shape=[-1, 5])])
    assert mismatches(features, model, feature_input="x") == [
        "input 'x' shape [-1, 5]: the model expects 4 features ([-1, 4])"
    ]


def test_outputs_left_out_are_taken_from_the_model() -> None:
    """A schema with inputs only is checked on its inputs and completed with the model's
    outputs."""
    model = ModelSchema(
        inputs=[TensorSchema(name="x", datatype="FP32", shape=[-1, 4])],
        outputs=[TensorSchema(name="y", datatype="INT64", shape=[-1, 1])],
    )
    declared = ModelSchema(inputs=[TensorSchema(name="x", datatype="FP32", shape=[8, 4])])
    assert mismatches(declared, model) == []
    assert effective(declared, model).outputs == model.outputs
    assert effective(declared, model).inputs == declared.inputs
    assert effective(None, model) == model


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": []}, "at least 1"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, 4]}]}, "positive size or -1"),
        ({"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [4]}]}, "FP32"),
        (
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [4]}] * 2},
            "repeated: ['x']",
        ),
    ],
)
def test_invalid_schemas_say_what_is_wrong(body: dict[str, object], message: str) -> None:
    """An empty input list, a zero dimension, an unknown datatype or a repeated name is refused."""
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ModelSchema.model_validate(body)
