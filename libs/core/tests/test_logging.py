"""JSON logs never carry a secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from aimp_core.logging import configure_logging, redact


def test_redact_hides_secret_fields_and_bearer_values() -> None:
    """Secret-looking keys and Bearer/Basic credentials are replaced, other data kept."""
    cleaned = redact(
        {
            "client_secret": "s3cr3t",
            "password": "hunter2",
            "nested": {"access_token": "abc"},
            "header": "Authorization: Bearer eyJhbGciOi.xyz",
            "service": "iris",
        }
    )
    assert cleaned["client_secret"] == "***"
    assert cleaned["password"] == "***"
    assert cleaned["nested"]["access_token"] == "***"
    assert "eyJ" not in cleaned["header"]
    assert cleaned["service"] == "iris"


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logging")
def test_log_lines_are_json_with_service_and_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """Each record is one JSON object naming the service, with secrets redacted."""
    configure_logging("demo")
    logging.getLogger("t").warning("login", extra={"password": "hunter2", "user": "ann"})
    line = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["service"] == "demo"
    assert record["level"] == "WARNING"
    assert record["password"] == "***"
    assert record["user"] == "ann"
    assert "hunter2" not in line
