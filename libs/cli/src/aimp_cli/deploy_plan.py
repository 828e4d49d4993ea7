"""Pure pieces of `aimp deploy`: the framework a file implies, the sample call a schema
implies, and what the deployment's pods say about progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The framework a model file's extension implies when --framework is not given.
FRAMEWORK_BY_SUFFIX: dict[str, str] = {
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".onnx": "onnx",
    ".py": "python",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".torchscript": "torchscript",
}
FRAMEWORKS = ("sklearn", "onnx", "python", "torchscript")
#: A zero of each Open Inference Protocol datatype, in its JSON form.
_ZERO: dict[str, Any] = {"BOOL": False, "BYTES": ""}


def framework_for(path: Path, given: str | None) -> str:
    """The framework named, or the one the extension implies; ValueError saying what to do."""
    if given:
        return given
    framework = FRAMEWORK_BY_SUFFIX.get(path.suffix.lower())
    if framework is None:
        known = ", ".join(f"{s} ({f})" for s, f in FRAMEWORK_BY_SUFFIX.items())
        raise ValueError(
            f"cannot tell the framework of {path.name!r} from its extension; known: {known}. "
            f"Name it with --framework {'|'.join(FRAMEWORKS)}"
        )
    return framework


def _size(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def sample_request(schema: dict[str, Any]) -> dict[str, Any]:
    """An Open Inference Protocol request with one all-zero input per declared input
    (every free dimension 1: one row)."""
    inputs = []
    for t in schema["inputs"]:
        shape = [1 if d == -1 else int(d) for d in t["shape"]]
        zero = _ZERO.get(t["datatype"], 0)
        inputs.append(
            {
                "name": t["name"],
                "datatype": t["datatype"],
                "shape": shape,
                "data": [zero] * _size(shape),
            }
        )
    return {"inputs": inputs}


def answer_problem(schema: dict[str, Any], body: dict[str, Any]) -> str | None:
    """Why an inference answer does not fit the schema's outputs (None when it does)."""
    got = {o.get("name") for o in body.get("outputs", [])}
    want = {t["name"] for t in schema.get("outputs") or []}
    missing = sorted(want - got)
    if missing:
        return f"the answer lacks output(s) {missing} (it has {sorted(n for n in got if n)})"
    return None


def pod_states(deployment: dict[str, Any]) -> str:
    """One line of pod states, e.g. ``iris-0 RUNNING, iris-1 STARTING``."""
    pods = deployment.get("pods") or []
    return ", ".join(f"{p['pod_id']} {p['state']}" for p in pods) or "no pods yet"


def ready_pods(deployment: dict[str, Any]) -> int:
    return sum(p.get("state") == "RUNNING" for p in deployment.get("pods") or [])


def pod_errors(deployment: dict[str, Any]) -> list[str]:
    return [
        f"{p['pod_id']}: {p['last_error']}"
        for p in deployment.get("pods") or []
        if p.get("last_error")
    ]
