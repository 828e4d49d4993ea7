"""JSON logs on stdout, one object per line, with secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from aimp_core.tracing import current_trace_id

_SECRET_KEYS = re.compile(r"(pass(word)?|secret|token|authorization|api[_-]?key)", re.I)
_BEARER = re.compile(r"(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
_REDACTED = "***"


def redact(value: Any, key: str = "") -> Any:
    """Return ``value`` with anything that looks like a secret replaced by ``***``."""
    if key and _SECRET_KEYS.search(key):
        return _REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _BEARER.sub(r"\1 " + _REDACTED, value)
    return value


class _Formatter(JsonFormatter):
    def __init__(self, service: str) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
        )
        self.service = service

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data["service"] = self.service
        trace_id = current_trace_id()  # a recorded span's, or the lean trace context's
        if trace_id:
            log_data["trace_id"] = trace_id
        cleaned = redact(log_data)
        assert isinstance(cleaned, dict)
        return cleaned


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record to stdout as one JSON object per line."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Formatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
