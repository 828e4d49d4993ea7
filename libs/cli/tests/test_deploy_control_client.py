"""deploy-control's own client in credentials.json, and its settings in the stack's env."""

from __future__ import annotations

import json
from pathlib import Path

from aimp_cli.home import DEMO_CLIENT_ID, DEPLOY_CONTROL_CLIENT_ID, Home, ensure_credentials
from aimp_cli.stack import Ports, service_env, services


def test_new_credentials_have_the_client_after_the_demo_app(tmp_path: Path) -> None:
    """A new file lists the demo app first, then deploy-control's admin:config client,
    which only deploy-control's environment holds (not the env every service shares)."""
    home = Home(tmp_path / "h")
    home.make()
    creds = ensure_credentials(home)
    assert [c["client_id"] for c in creds["clients"]] == [DEMO_CLIENT_ID, DEPLOY_CONTROL_CLIENT_ID]
    client = creds["clients"][1]
    assert client["roles"] == ["admin:config"] and len(client["client_secret"]) >= 32
    shared = service_env(home, Ports.from_env({}), "redis://127.0.0.1:6379/0")
    assert not any(key.startswith("AIMP_DEPLOY_CONTROL_CLIENT") for key in shared)
    own = {c.name: c.extra_env for c in services(Ports.from_env({}), home)}
    assert own["deploy-control"]["AIMP_DEPLOY_CONTROL_CLIENT_ID"] == DEPLOY_CONTROL_CLIENT_ID
    assert own["deploy-control"]["AIMP_DEPLOY_CONTROL_CLIENT_SECRET"] == client["client_secret"]
    assert all(not env for name, env in own.items() if name != "deploy-control")


def test_an_older_file_gets_the_client_and_keeps_everything_else(tmp_path: Path) -> None:
    """A credentials file from before the client existed gains it (still mode 0600); the
    admin and the demo app are unchanged, and a second read changes nothing."""
    home = Home(tmp_path / "h")
    home.make()
    old = {
        "admin": {"username": "admin", "password": "a-long-random-password"},
        "clients": [{"client_id": DEMO_CLIENT_ID, "client_secret": "s" * 40, "roles": ["invoker"]}],
    }
    home.credentials.write_text(json.dumps(old))
    home.credentials.chmod(0o600)
    creds = ensure_credentials(home)
    assert creds["admin"] == old["admin"] and creds["clients"][0] == old["clients"][0]
    assert creds["clients"][1]["client_id"] == DEPLOY_CONTROL_CLIENT_ID
    assert json.loads(home.credentials.read_text()) == creds
    assert oct(home.credentials.stat().st_mode & 0o777) == "0o600"
    assert ensure_credentials(home) == creds


def test_no_credentials_file_means_no_client_env(tmp_path: Path) -> None:
    """Without credentials.json (aimp up writes it first) the env names no client."""
    home = Home(tmp_path / "none")
    own = {c.name: c.extra_env for c in services(Ports.from_env({}), home)}
    assert "AIMP_DEPLOY_CONTROL_CLIENT_ID" not in own["deploy-control"]
