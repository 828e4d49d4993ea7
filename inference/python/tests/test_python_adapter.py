"""The custom Python handler adapter: schema file, batching, and predict's answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aimp_inference.adapter import load_adapter
from aimp_inference.python_adapter import PythonAdapter, schema_path

HANDLER = """
import numpy as np

def predict(inputs):
    x = inputs["x"]
    return {"total": x.sum(axis=1, keepdims=True), "n": np.full((len(x), 1), x.shape[1])}
"""


def _write(tmp_path: Path, schema: dict[str, object], code: str = HANDLER) -> Path:
    path = tmp_path / "model-abc.py"
    path.write_text(code)
    schema_path(path).write_text(json.dumps(schema))
    return path


def _schema(batch: int) -> dict[str, object]:
    return {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [batch, 3]}],
        "outputs": [
            {"name": "total", "datatype": "FP64", "shape": [batch, 1]},
            {"name": "n", "datatype": "INT64", "shape": [batch, 1]},
        ],
    }


def test_batched_handler_serves_the_declared_tensors(tmp_path: Path) -> None:
    """A schema whose first dimensions are all -1 is batched; outputs get the declared types."""
    path = _write(tmp_path, _schema(-1))
    assert schema_path(path).name == "model-abc.schema.json"
    adapter = load_adapter(path)  # .py means framework "python"
    assert adapter.batched
    assert [(s.name, s.datatype, s.shape) for s in adapter.inputs] == [("x", "FP32", (3,))]
    assert [(s.name, s.datatype, s.shape) for s in adapter.outputs] == [
        ("total", "FP64", (1,)),
        ("n", "INT64", (1,)),
    ]
    out = adapter.infer({"x": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)})
    np.testing.assert_array_equal(out["total"], [[6.0], [15.0]])
    assert out["total"].dtype == np.float64 and out["n"].dtype == np.int64


def test_fixed_first_dimension_is_unbatched(tmp_path: Path) -> None:
    """A fixed first dimension keeps the whole shape and one call at a time."""
    adapter = PythonAdapter.load(_write(tmp_path, _schema(2)))
    assert not adapter.batched
    assert adapter.inputs[0].shape == (2, 3)


@pytest.mark.parametrize(
    ("code", "schema", "message"),
    [
        ("x = 1\n", _schema(-1), "defines no predict"),
        ("raise RuntimeError('boom')\n", _schema(-1), "RuntimeError: boom"),
        (HANDLER, {"inputs": _schema(-1)["inputs"]}, "declare inputs and outputs"),
        (
            HANDLER,
            {
                "inputs": [{"name": "x", "datatype": "BYTES", "shape": [-1]}],
                "outputs": _schema(-1)["outputs"],
            },
            "BYTES is not served",
        ),
    ],
)
def test_bad_handlers_are_value_errors(
    tmp_path: Path, code: str, schema: dict[str, object], message: str
) -> None:
    """A handler without predict, one that fails to import, or a bad schema is refused."""
    with pytest.raises(ValueError, match=message):
        PythonAdapter.load(_write(tmp_path, schema, code))


def test_missing_output_at_call_time_is_a_value_error(tmp_path: Path) -> None:
    """An answer without a declared output is an error naming it, not a silent gap."""
    adapter = PythonAdapter.load(
        _write(tmp_path, _schema(-1), "def predict(inputs):\n    return {'total': 1}\n")
    )
    with pytest.raises(ValueError, match="no output 'n'"):
        adapter.infer({"x": np.zeros((1, 3), dtype=np.float32)})
