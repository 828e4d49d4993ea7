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
    """Read credentials.json, creating it (mode 0600, random secrets) on first use."""
    if home.credentials.exists():
        data: dict[str, Any] = json.loads(home.credentials.read_text())
        return data
    data = {
        "admin": {"username": ADMIN_USERNAME, "password": secrets.token_urlsafe(18)},
        "clients": [
            {
                "client_id": DEMO_CLIENT_ID,
                "client_secret": secrets.token_urlsafe(32),
                "roles": ["invoker"],
            }
        ],
    }
    fd = os.open(home.credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    return data
