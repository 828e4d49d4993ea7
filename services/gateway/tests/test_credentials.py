"""The credentials file: unsafe admin passwords refuse the start; bootstrap is idempotent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aimp_gateway.bootstrap import apply_credentials
from aimp_gateway.credentials import (
    StartupRefused,
    admin_password_problem,
    load_credentials,
)
from aimp_gateway.passwords import verify_secret
from aimp_gateway.store import Store

GOOD = "correct-horse-battery-staple"


@pytest.mark.parametrize(
    "password",
    ["", "admin", "password", "changeme", "short-pw", "ADMIN", "Password1234", "changemechangeme"],
)
def test_weak_admin_passwords_are_refused(write_credentials, password: str) -> None:  # type: ignore[no-untyped-def]
    """Missing, short or well-known admin passwords refuse the start with a clear message."""
    with pytest.raises(StartupRefused, match="admin password"):
        load_credentials(write_credentials(password=password))


def test_password_equal_to_username_is_refused() -> None:
    """The admin password may not be the user name."""
    assert admin_password_problem("administrator1", "Administrator1") is not None
    assert admin_password_problem("admin", GOOD) is None


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """No credentials file means no admin password: refused, naming the path."""
    with pytest.raises(StartupRefused, match="does not exist"):
        load_credentials(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"clients": []}',
        '{"admin": {"username": "admin", "password": "' + GOOD + '"}, '
        '"clients": [{"client_id": "a", "client_secret": "s", "roles": ["root"]}]}',
    ],
)
def test_malformed_file_is_refused(tmp_path: Path, text: str) -> None:
    """Bad JSON, a missing admin or an unknown role refuses the start."""
    path = tmp_path / "credentials.json"
    path.write_text(text)
    with pytest.raises(StartupRefused):
        load_credentials(path)


def test_bootstrap_upserts_and_keeps_verifying_hashes(store: Store, write_credentials) -> None:  # type: ignore[no-untyped-def]
    """Admin and clients are stored hashed; a second start keeps hashes that still verify."""
    clients = [{"client_id": "demo", "client_secret": "s3cret-demo", "roles": ["invoker"]}]
    creds = load_credentials(write_credentials(clients=clients))
    apply_credentials(store, creds)
    user, client = store.get_user("admin"), store.get_client("demo")
    assert user is not None and client is not None
    assert user.roles == ("admin",) and client.roles == ("invoker",)
    assert GOOD not in user.password_hash and verify_secret(user.password_hash, GOOD)
    assert verify_secret(client.secret_hash, "s3cret-demo")

    apply_credentials(store, creds)
    assert store.get_user("admin") == user
    assert store.get_client("demo") == client

    clients[0]["client_secret"] = "rotated-secret"
    clients[0]["roles"] = ["invoke:resnet"]
    apply_credentials(store, load_credentials(write_credentials(clients=clients)))
    rotated = store.get_client("demo")
    assert rotated is not None and rotated.roles == ("invoke:resnet",)
    assert verify_secret(rotated.secret_hash, "rotated-secret")
    assert not verify_secret(rotated.secret_hash, "s3cret-demo")


def test_gateway_process_exits_nonzero_on_default_password(
    tmp_path: Path, write_credentials
) -> None:  # type: ignore[no-untyped-def]
    """The aimp-gateway command refuses to start with password 'changeme' and exits non-zero."""
    env = {
        **os.environ,
        "AIMP_HOME": str(tmp_path / "home"),
        "AIMP_GATEWAY_CREDENTIALS_FILE": str(write_credentials(password="changeme")),
    }
    exe = str(Path(sys.executable).parent / "aimp-gateway")
    done = subprocess.run([exe], env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode != 0
    assert b"well-known default" in done.stderr
