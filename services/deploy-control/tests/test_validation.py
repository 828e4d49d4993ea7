"""Unit tests of deployment request validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.errors import BadRequest
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
    """Replicas must be 1..max."""
    assert validate_replicas(3, 8) == 3
    for bad in (0, -1, 9):
        with pytest.raises(BadRequest, match="between 1 and 8"):
            validate_replicas(bad, 8)


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
