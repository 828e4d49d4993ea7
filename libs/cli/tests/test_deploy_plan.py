"""`aimp deploy`'s pure pieces: framework from the extension, the sample call, pod states."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_cli.deploy_plan import (
    answer_problem,
    framework_for,
    pod_errors,
    pod_states,
    ready_pods,
    sample_request,
)


@pytest.mark.parametrize(
    ("name", "framework"),
    [("m.ONNX", "onnx"), ("m.joblib", "sklearn"), ("h.py", "python"), ("m.pt", "torchscript")],
)
def test_framework_from_extension(name: str, framework: str) -> None:
    """Known extensions name their framework, whatever their case."""
    assert framework_for(Path(name), None) == framework
    assert framework_for(Path(name), "sklearn") == "sklearn"  # --framework wins


def test_unknown_extension_says_how_to_name_it() -> None:
    """An unknown extension is refused with the --framework way out."""
    with pytest.raises(ValueError, match="--framework sklearn\\|onnx"):
        framework_for(Path("model.bin"), None)


@given(st.lists(st.one_of(st.just(-1), st.integers(1, 5)), min_size=1, max_size=4))
def test_sample_request_fills_every_declared_input(shape: list[int]) -> None:
    """Each input gets zeros in a concrete shape (free dimensions 1) of the right size."""
    schema = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": shape},
            {"name": "ok", "datatype": "BOOL", "shape": shape},
        ]
    }
    request = sample_request(schema)
    x, ok = request["inputs"]
    assert x["shape"] == [1 if d == -1 else d for d in shape]
    size = 1
    for d in x["shape"]:
        size *= d
    assert x["data"] == [0] * size and ok["data"] == [False] * size


def test_answer_and_pod_views() -> None:
    """A missing output is named; pod lines, ready counts and errors come from the view."""
    schema = {"outputs": [{"name": "label"}, {"name": "probabilities"}]}
    assert (
        answer_problem(schema, {"outputs": [{"name": "label"}, {"name": "probabilities"}]}) is None
    )
    assert "['probabilities']" in str(answer_problem(schema, {"outputs": [{"name": "label"}]}))
    dep = {
        "pods": [
            {"pod_id": "a-0", "state": "RUNNING", "last_error": None},
            {"pod_id": "a-1", "state": "CRASHED", "last_error": "triton exited with code 2"},
        ]
    }
    assert pod_states(dep) == "a-0 RUNNING, a-1 CRASHED"
    assert ready_pods(dep) == 1
    assert pod_errors(dep) == ["a-1: triton exited with code 2"]
    assert pod_states({"pods": []}) == "no pods yet"
