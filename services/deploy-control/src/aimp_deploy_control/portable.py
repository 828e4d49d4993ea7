"""Exports a joblib model to the portable JSON the native pods load, in a subprocess.

deploy-control never imports the inference package (services are independent);
it runs ``python -m aimp_inference.export MODEL OUT`` with a timeout instead. The
result lives under ``$AIMP_HOME/deployments/<name>/`` beside a small record of the
source file's size and modification time, so an unchanged model is not exported
again (a restart or a scale-up reuses it) and a replaced one is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path

from aimp_core.errors import AimpError, BadRequest

log = logging.getLogger(__name__)

PORTABLE_NAME = "model.json"
SOURCE_NAME = "model.json.source"
#: Longest exporter message put in an error body.
MAX_MESSAGE = 500


class ExportUnavailable(AimpError):
    status, title = 500, "Model export unavailable"


class ExportTimedOut(AimpError):
    status, title = 504, "Model export timed out"


def source_record(model_file: Path) -> dict[str, object]:
    st = model_file.stat()
    return {"model_file": str(model_file), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_current(out_file: Path, model_file: Path) -> bool:
    """True when ``out_file`` was exported from ``model_file`` as it is now."""
    try:
        recorded = json.loads((out_file.parent / SOURCE_NAME).read_text())
        return out_file.is_file() and bool(recorded == source_record(model_file))
    except (OSError, ValueError):
        return False


def exporter_message(stderr: str) -> str:
    """The exporter's own message: the last line of its output (a traceback's ends in it)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return "the exporter failed without a message"
    last = lines[-1]
    # "aimp_inference.export.UnsupportedModel: SVC cannot ..." -> keep the kind, short.
    kind, sep, rest = last.partition(": ")
    if sep and " " not in kind:
        last = f"{kind.rsplit('.', 1)[-1]}: {rest}"
    return last[:MAX_MESSAGE]


async def export(
    command: list[str], model_file: Path, out_file: Path, *, runtime: str, timeout_s: float
) -> Path:
    """Write ``out_file`` (atomically) from ``model_file``, unless it is already current."""
    if is_current(out_file, model_file):
        return out_file
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.{os.getpid()}.tmp")
    argv = [*command, str(model_file), str(tmp)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # a timeout kills its whole group, children included
        )
    except OSError as exc:
        raise ExportUnavailable(
            f"cannot run the model exporter {command[0]!r} ({exc.strerror}); check "
            "AIMP_DEPLOY_CONTROL_EXPORT_COMMAND"
        ) from None
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        tmp.unlink(missing_ok=True)
        raise ExportTimedOut(
            f"exporting {str(model_file)!r} for runtime {runtime!r} took longer than "
            f"{timeout_s:g} s (AIMP_DEPLOY_CONTROL_EXPORT_TIMEOUT_S raises the limit)"
        ) from None
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        message = exporter_message(err.decode(errors="replace"))
        log.warning(
            "model export failed",
            extra={"model_file": str(model_file), "exit_code": proc.returncode, "error": message},
        )
        if "No module named 'aimp_inference" in message:
            raise ExportUnavailable(
                "the model exporter (aimp_inference.export) is not installed beside "
                "deploy-control; install the inference package or set "
                "AIMP_DEPLOY_CONTROL_EXPORT_COMMAND"
            )
        raise BadRequest(
            f"model_file {str(model_file)!r} cannot run on runtime {runtime!r}: the export "
            f"to portable JSON failed: {message}. Use runtime 'triton' for other models"
        )
    os.replace(tmp, out_file)
    (out_file.parent / SOURCE_NAME).write_text(json.dumps(source_record(model_file)))
    log.info("model exported", extra={"model_file": str(model_file), "out_file": str(out_file)})
    return out_file
