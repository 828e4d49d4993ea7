"""Unit tests of deployment request validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aimp_core.errors import BadRequest
from aimp_deploy_control.runtimes import unavailable_reason, validate_runtime
from aimp_deploy_control.settings import DeployControlSettings
from aimp_deploy_control.validation import (
    differences,
    validate_model_file,
    validate_name,
    validate_replicas,
)


@given(st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z"))
def test_dns_labels_pass(name: str) -> None:
    """Every RFC 1123 label is accepted unchanged."""
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Iris", "iris_v2", "-iris", "iris-", "a" * 64, "iris.v2", "ïris", "iris\n"]
)
def test_bad_names_fail_with_advice(name: str) -> None:
    """Upper case, underscores, dots, edge hyphens, length > 63 all give a 400 with advice."""
    with pytest.raises(BadRequest, match="DNS label"):
        validate_name(name)


def test_replicas_bounds() -> None:
    """Replicas must be 1..max to deploy, 0..max to scale."""
    assert validate_replicas(3, 8) == 3
    for bad in (0, -1, 9):
        with pytest.raises(BadRequest, match="between 1 and 8"):
            validate_replicas(bad, 8)
    assert validate_replicas(0, 8, minimum=0) == 0
    for bad in (-1, 9):
        with pytest.raises(BadRequest, match="between 0 and 8"):
            validate_replicas(bad, 8, minimum=0)


@pytest.mark.parametrize(
    ("runtime", "framework", "error"),
    [
        ("triton", "sklearn", None),
        ("triton", "onnx", None),
        ("cpp", "sklearn", None),
        ("java", "sklearn", None),
        (
            "cpp",
            "onnx",
            "runtime 'cpp' serves scikit-learn models exported to JSON; use runtime "
            "'triton' for ONNX",
        ),
        ("java", "onnx", "runtime 'java' serves scikit-learn models exported to JSON"),
        ("Triton", "sklearn", "runtime 'Triton' is not known: use one of 'triton', 'cpp', 'java'"),
        ("rust", "sklearn", "GET /v1/runtimes"),
        ("triton", "pytorch", "framework 'pytorch' is not supported: use 'sklearn'"),
        ("cpp", "xgboost", "'onnx' (an ONNX model, runtime 'triton' only)"),
    ],
)
def test_runtime_and_framework_combinations(
    runtime: str, framework: str, error: str | None
) -> None:
    """Each runtime takes its frameworks; every refusal names the field and what is allowed."""
    if error is None:
        assert validate_runtime(runtime, framework).name == runtime
    else:
        with pytest.raises(BadRequest) as err:
            validate_runtime(runtime, framework)
        assert error in err.value.detail


def test_native_commands_must_be_absolute(tmp_path: Path) -> None:
    """A relative pod command is a settings error naming the fix; empty means unset."""
    with pytest.raises(ValidationError, match="absolute path"):
        DeployControlSettings(home=tmp_path, deploy_control_cpp_pod_command="build/aimp-cpp-pod")
    settings = DeployControlSettings(home=tmp_path, deploy_control_java_pod_command="")
    assert settings.deploy_control_java_pod_command is None
    assert "make native" in (unavailable_reason(settings, "java") or "")
    assert unavailable_reason(settings, "triton") is None
    pod = tmp_path / "aimp-java-pod"
    pod.write_text("#!/bin/sh\n")
    settings = DeployControlSettings(home=tmp_path, deploy_control_java_pod_command=str(pod))
    assert "not an executable file" in (unavailable_reason(settings, "java") or "")
    pod.chmod(0o755)
    assert unavailable_reason(settings, "java") is None


def test_model_file_checks(tmp_path: Path) -> None:
    """A model file must be absolute, exist, be a file; each failure names the path."""
    model = tmp_path / "m.joblib"
    model.write_bytes(b"x")
    assert validate_model_file(str(model)) == model.resolve()
    with pytest.raises(BadRequest, match="absolute"):
        validate_model_file("m.joblib")
    with pytest.raises(BadRequest, match="does not exist"):
        validate_model_file(str(tmp_path / "missing.joblib"))
    with pytest.raises(BadRequest, match="not a regular file"):
        validate_model_file(str(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_model_file(tmp_path: Path) -> None:
    """A file deploy-control cannot read is refused."""
    model = tmp_path / "m.joblib"
    model.write_bytes(b"x")
    model.chmod(0)
    with pytest.raises(BadRequest, match="not readable"):
        validate_model_file(str(model))


def test_differences_name_each_changed_field() -> None:
    """Only changed fields are reported, old and new value side by side."""
    stored = {"model_file": "/a", "framework": "sklearn", "replicas": 1}
    assert differences(stored, dict(stored)) == []
    assert differences(stored, {**stored, "model_file": "/b"}) == ["model_file: '/a' -> '/b'"]
