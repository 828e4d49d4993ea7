"""The layout of AIMP_HOME and the credentials file that `aimp up` creates."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_CLIENT_ID = "demo-app"
ADMIN_USERNAME = "admin"
#: deploy-control's own client: it writes traffic splits to the gateway's config center.
DEPLOY_CONTROL_CLIENT_ID = "aimp-deploy-control"
DEPLOY_CONTROL_ROLES = ["admin:config"]


@dataclass(frozen=True)
class Home:
    """Paths under AIMP_HOME (default ``~/.aimp``)."""

    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    @property
    def state(self) -> Path:
        return self.run / "state.json"

    def pid_file(self, component: str) -> Path:
        return self.run / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def make(self) -> None:
        for path in (self.root, self.run, self.logs, self.models):
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)


def ensure_credentials(home: Home) -> dict[str, Any]:
    """Read credentials.json, creating it (mode 0600, random secrets) on first use; a file
    from an older aimp gets the clients it lacks (the demo app stays the first)."""
    if home.credentials.exists():
        data: dict[str, Any] = json.loads(home.credentials.read_text())
        if deploy_control_client(data) is None:
            data.setdefault("clients", []).append(_deploy_control_entry())
            _write(home.credentials, data, replace=True)
        return data
    data = {
        "admin": {"username": ADMIN_USERNAME, "password": secrets.token_urlsafe(18)},
        "clients": [
            {
                "client_id": DEMO_CLIENT_ID,
                "client_secret": secrets.token_urlsafe(32),
                "roles": ["invoker"],
            },
            _deploy_control_entry(),
        ],
    }
    _write(home.credentials, data, replace=False)
    return data


def deploy_control_client(credentials: dict[str, Any]) -> dict[str, Any] | None:
    """deploy-control's entry in the credentials, if it has one."""
    for client in credentials.get("clients", []):
        if client.get("client_id") == DEPLOY_CONTROL_CLIENT_ID:
            found: dict[str, Any] = client
            return found
    return None


def _deploy_control_entry() -> dict[str, Any]:
    return {
        "client_id": DEPLOY_CONTROL_CLIENT_ID,
        "client_secret": secrets.token_urlsafe(32),
        "roles": list(DEPLOY_CONTROL_ROLES),
    }


def _write(path: Path, data: dict[str, Any], *, replace: bool) -> None:
    """Write the file with mode 0600 from its first byte (a replacement goes through a
    private temporary file renamed over it, so a reader never sees half a file)."""
    target = path.with_suffix(".json.tmp") if replace else path
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    if replace:
        os.replace(target, path)
