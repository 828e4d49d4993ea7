"""Checks on a requested deployment, each failing with a 400 that says what to fix."""

from __future__ import annotations

import os
import re
from pathlib import Path

from aimp_core.errors import BadRequest

#: RFC 1123 label, as Kubernetes requires for names: it must work there too.
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def validate_name(name: str) -> str:
    if not _DNS_LABEL.fullmatch(name):
        raise BadRequest(
            f"name {name[:80]!r} is not a DNS label: use 1-63 lowercase letters, digits and "
            "'-', starting and ending with a letter or digit (e.g. 'iris' or 'fraud-v2')"
        )
    return name


def validate_replicas(replicas: int, max_replicas: int, *, minimum: int = 1) -> int:
    """A deployment starts with 1..max replicas; scaling may also go to 0 (``minimum=0``)."""
    if not minimum <= replicas <= max_replicas:
        zero = " (0 is allowed when scaling: PUT /v1/deployments/{name}/scale)" if minimum else ""
        raise BadRequest(
            f"replicas must be between {minimum} and {max_replicas} here, got {replicas} "
            f"(AIMP_MAX_REPLICAS raises the ceiling){zero}"
        )
    return replicas


def validate_model_file(model_file: str) -> Path:
    """The absolute path of an existing, readable regular file."""
    path = Path(model_file).expanduser()
    if not path.is_absolute():
        raise BadRequest(
            f"model_file {model_file!r} must be an absolute path (deploy-control does not "
            "share the caller's working directory)"
        )
    if not path.exists():
        raise BadRequest(f"model_file {str(path)!r} does not exist on the deploy-control host")
    if not path.is_file():
        raise BadRequest(f"model_file {str(path)!r} is not a regular file")
    if not os.access(path, os.R_OK):
        raise BadRequest(f"model_file {str(path)!r} is not readable by deploy-control")
    return path.resolve()


def differences(existing: dict[str, object], requested: dict[str, object]) -> list[str]:
    """Fields whose requested value differs from the stored one, as 'field: old -> new'."""
    return [
        f"{key}: {existing.get(key)!r} -> {value!r}"
        for key, value in requested.items()
        if existing.get(key) != value
    ]
