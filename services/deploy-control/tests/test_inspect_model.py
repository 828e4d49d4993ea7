"""The model inspector's rules (run in-process here; deploy-control runs it as a subprocess)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aimp_deploy_control.inspect_model import Refused, inspect

HANDLER = """
import numpy as np

def predict(inputs):
    x = inputs["x"]
    return {"total": x.sum(axis=1, keepdims=True).astype(np.float32)}
"""
SCHEMA: dict[str, Any] = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
    "outputs": [{"name": "total", "datatype": "FP32", "shape": [-1, 1]}],
}


def _handler(tmp_path: Path, code: str) -> Path:
    path = tmp_path / "upload-0a1b"  # an upload in progress has no .py suffix
    path.write_text(code)
    return path


def test_a_handler_is_called_once_and_its_outputs_read(tmp_path: Path) -> None:
    """A handler whose predict answers as declared has the declared schema."""
    assert inspect("python", _handler(tmp_path, HANDLER), SCHEMA) == SCHEMA


def test_a_handler_answering_other_dimensions_is_reported(tmp_path: Path) -> None:
    """An output whose fixed dimension differs comes back with the real size (so the
    schema check names it); a missing output, a failing predict or no schema are refused."""
    wide = HANDLER.replace("keepdims=True)", "keepdims=True).repeat(2, axis=1)")
    got = inspect("python", _handler(tmp_path, wide), SCHEMA)
    assert got["outputs"] == [{"name": "total", "datatype": "FP32", "shape": [-1, 2]}]
    cases = [
        (HANDLER.replace('"total"', '"sum"'), SCHEMA, "returned no output 'total'"),
        ("def predict(inputs):\n    raise KeyError('y')\n", SCHEMA, "predict() failed"),
        ("import no_such_module_here\n", SCHEMA, "importing the handler failed"),
        ("x = 1\n", SCHEMA, "no predict(inputs)"),
        (HANDLER, None, "needs a declared schema"),
        (HANDLER, {"inputs": SCHEMA["inputs"]}, "needs a declared schema"),
    ]
    for code, schema, message in cases:
        with pytest.raises(Refused, match=message.replace("(", r"\(").replace(")", r"\)")):
            inspect("python", _handler(tmp_path, code), schema)


def test_unknown_framework_is_refused(tmp_path: Path) -> None:
    """Only sklearn, onnx and python files are inspected."""
    with pytest.raises(Refused, match="cannot be inspected"):
        inspect("xgboost", tmp_path / "m", None)
