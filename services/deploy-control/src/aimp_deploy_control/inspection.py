"""Checks an uploaded model file against its declared schema (or infers the schema).

The file is read by :mod:`aimp_deploy_control.inspect_model` in a subprocess with a
timeout and a bare environment (joblib runs pickled code, a handler is user code:
neither runs in the server process nor sees its settings). A declared schema that
does not match is a 400 naming each wrong field.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from aimp_core.errors import AimpError, BadRequest
from aimp_deploy_control.model_schema import ModelSchema, effective, mismatches

log = logging.getLogger(__name__)

SKLEARN, ONNX, TORCHSCRIPT, PYTHON = "sklearn", "onnx", "torchscript", "python"
#: Formats a model version may have, with what each is.
FRAMEWORKS: dict[str, str] = {
    SKLEARN: "a scikit-learn estimator saved with joblib",
    ONNX: "an ONNX graph",
    TORCHSCRIPT: "a TorchScript module (torch.jit.save)",
    PYTHON: "a .py file defining predict(inputs: dict[str, ndarray]) -> dict[str, ndarray]",
}
#: Longest inspector message put in an error body.
MAX_MESSAGE = 1000
#: Schemas read from files, by (framework, SHA-256, declared schema): uploading the same
#: bytes again (a retried `aimp deploy`) skips the inspector's ~1.5 s of imports.
CACHE_ENTRIES = 256
_read: dict[tuple[str, str, str], ModelSchema] = {}


class InspectionFailed(AimpError):
    status, title = 500, "Model inspection failed"


class InspectionTimedOut(AimpError):
    status, title = 504, "Model inspection timed out"


@dataclass(frozen=True)
class Checked:
    schema: ModelSchema
    #: True when the caller declared (part of) the schema, False when all was inferred.
    declared: bool


def validate_framework(framework: str) -> str:
    if framework not in FRAMEWORKS:
        allowed = "; ".join(f"{k!r} ({v})" for k, v in FRAMEWORKS.items())
        raise BadRequest(f"framework {framework[:40]!r} is not supported: use {allowed}")
    if framework == TORCHSCRIPT:
        if importlib.util.find_spec("torch") is None:
            raise BadRequest(
                "framework 'torchscript' needs PyTorch, and torch is not installed beside "
                "deploy-control (it is not a dependency: it weighs gigabytes); export the "
                "model to ONNX with torch.onnx.export and upload it as framework 'onnx'"
            )
        raise BadRequest(
            "framework 'torchscript': torch is installed, but the Triton pod has no "
            "TorchScript adapter yet, so it could not serve the model; export it to ONNX "
            "with torch.onnx.export and upload it as framework 'onnx'"
        )
    return framework


def _bare_env() -> dict[str, str]:
    """What the inspector needs and nothing else (no AIMP_* settings, no secrets)."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "HOME")
    return {k: os.environ[k] for k in keep if k in os.environ} | {"PYTHONUNBUFFERED": "1"}


async def _run(argv: list[str], stdin: bytes, timeout_s: float) -> tuple[int, bytes, bytes]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_bare_env(),
            start_new_session=True,  # a timeout kills its whole group
        )
    except OSError as exc:
        raise InspectionFailed(f"cannot start the model inspector ({exc.strerror})") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise InspectionTimedOut(
            f"reading the model took longer than {timeout_s:g} s "
            "(AIMP_DEPLOY_CONTROL_INSPECT_TIMEOUT_S raises the limit)"
        ) from None
    return proc.returncode or 0, out, err


async def read_schema(
    framework: str, model_file: Path, declared: ModelSchema | None, *, timeout_s: float
) -> ModelSchema:
    """The schema the Triton pod will serve for ``model_file``; 400 if it cannot serve it."""
    argv = [sys.executable, "-m", "aimp_deploy_control.inspect_model", framework, str(model_file)]
    stdin = declared.model_dump_json().encode() if declared is not None else b""
    code, out, err = await _run(argv, stdin, timeout_s)
    try:
        answer = json.loads(out.decode(errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        log.warning("model inspector crashed", extra={"exit_code": code, "error": tail[0]})
        raise BadRequest(
            f"the {framework} model file could not be read (the inspector exited with code "
            f"{code}: {tail[0][:MAX_MESSAGE]})"
        ) from None
    if "error" in answer:
        raise BadRequest(
            f"the file is not a {framework} model the platform can serve: "
            f"{str(answer['error'])[:MAX_MESSAGE]}"
        )
    try:
        return ModelSchema.model_validate(answer["schema"])
    except (ValidationError, KeyError) as exc:
        raise BadRequest(f"the model's own schema is not servable: {exc}") from None


async def check(
    framework: str,
    model_file: Path,
    sha256: str,
    declared: ModelSchema | None,
    *,
    timeout_s: float,
) -> Checked:
    """The version's schema: the model's own, checked against ``declared`` when given."""
    # A handler's schema comes from calling it with the declared inputs: part of the key.
    key = (
        framework,
        sha256,
        declared.model_dump_json() if framework == PYTHON and declared else "",
    )
    actual = _read.get(key)
    if actual is None:
        actual = await read_schema(framework, model_file, declared, timeout_s=timeout_s)
        if len(_read) >= CACHE_ENTRIES:
            _read.pop(next(iter(_read)))
        _read[key] = actual
    if declared is None:
        return Checked(actual, declared=False)
    wrong = mismatches(declared, actual, feature_input="input" if framework == SKLEARN else None)
    if wrong:
        raise BadRequest(
            "the declared schema does not match the model file: " + "; ".join(wrong[:20])
        )
    return Checked(effective(declared, actual), declared=True)
