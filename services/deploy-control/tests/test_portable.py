"""Tests of the portable-JSON export step: real subprocesses, small shell exporters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aimp_core.errors import BadRequest
from aimp_deploy_control.portable import (
    ExportTimedOut,
    ExportUnavailable,
    export,
    exporter_message,
    is_current,
)


def shell(script: str) -> list[str]:
    """An exporter command: ``sh -c SCRIPT sh MODEL OUT`` ($1 = model, $2 = output)."""
    return ["sh", "-c", script, "sh"]


def replace_model(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "user" / "model.joblib"
    path.parent.mkdir()
    path.write_bytes(b"model v1")
    return path


async def test_exports_once_and_again_when_the_model_changes(model: Path, tmp_path: Path) -> None:
    """The output is written where asked; an unchanged model is not exported twice; a
    replaced one is."""
    runs = tmp_path / "runs"
    command = shell(f'cat "$1" > "$2"; echo run >> {runs}')
    out = tmp_path / "home" / "deployments" / "iris" / "model.json"
    assert await export(command, model, out, runtime="java", timeout_s=10) == out
    assert out.read_bytes() == b"model v1" and is_current(out, model)
    await export(command, model, out, runtime="java", timeout_s=10)
    assert runs.read_text().count("run") == 1
    replace_model(model, b"model v2 (longer)")
    assert not is_current(out, model)
    await export(command, model, out, runtime="java", timeout_s=10)
    assert out.read_bytes() == b"model v2 (longer)" and runs.read_text().count("run") == 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.json", "model.json.source"]
    assert json.loads((out.parent / "model.json.source").read_text())["model_file"] == str(model)


async def test_a_refusal_is_a_400_with_the_exporters_message(model: Path, tmp_path: Path) -> None:
    """A failing exporter's last line reaches the caller; no output file is left behind."""
    command = shell(
        'echo "Traceback (most recent call last):" >&2; '
        'echo "aimp_inference.export.UnsupportedModel: SVC cannot be exported yet" >&2; exit 1'
    )
    out = tmp_path / "d" / "model.json"
    with pytest.raises(BadRequest) as err:
        await export(command, model, out, runtime="cpp", timeout_s=10)
    assert "UnsupportedModel: SVC cannot be exported yet" in err.value.detail
    assert "runtime 'cpp'" in err.value.detail and "'triton'" in err.value.detail
    assert list(out.parent.iterdir()) == []


async def test_timeouts_and_missing_exporters(model: Path, tmp_path: Path) -> None:
    """A slow exporter is killed after the timeout; a missing one names the setting."""
    out = tmp_path / "d" / "model.json"
    with pytest.raises(ExportTimedOut, match=r"longer than 0\.3 s"):
        await export(shell("sleep 10"), model, out, runtime="java", timeout_s=0.3)
    with pytest.raises(ExportUnavailable, match="AIMP_DEPLOY_CONTROL_EXPORT_COMMAND"):
        await export(["/nonexistent/python"], model, out, runtime="java", timeout_s=5)
    missing_module = shell(
        "echo \"ModuleNotFoundError: No module named 'aimp_inference'\" >&2; exit 1"
    )
    with pytest.raises(ExportUnavailable, match="not installed"):
        await export(missing_module, model, out, runtime="java", timeout_s=5)
    assert [p for p in out.parent.iterdir() if not p.name.startswith(".")] == []


def test_exporter_message_keeps_the_last_line_short() -> None:
    """The last non-empty line, a dotted exception name shortened, capped in length."""
    assert exporter_message("Traceback...\n  x\nKeyError: 110\n\n") == "KeyError: 110"
    assert exporter_message("a.b.UnsupportedModel: no") == "UnsupportedModel: no"
    assert exporter_message("usage: python -m x MODEL OUT") == "usage: python -m x MODEL OUT"
    assert exporter_message("") == "the exporter failed without a message"
    assert len(exporter_message("E: " + "x" * 5000)) == 500
