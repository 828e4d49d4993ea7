"""The credentials file (DESIGN.md): the admin user and the bootstrap clients.

``{"admin": {"username", "password"}, "clients": [{"client_id", "client_secret", "roles"}]}``

Reading and checking it is pure; the gateway refuses to start on a missing,
short or well-known admin password rather than run with a guessable one.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator

from aimp_core.auth import ROLE_ADMIN, ROLE_DESCRIPTIONS, is_valid_role

#: Shorter admin passwords are refused; 12 characters resist online guessing.
MIN_ADMIN_PASSWORD_LEN = 12
#: Passwords that ship in examples and tutorials; refused whatever their length.
KNOWN_DEFAULT_PASSWORDS = frozenset(
    {
        "admin",
        "password",
        "changeme",
        "secret",
        "default",
        "letmein",
        "aimp",
        "administrator",
        "adminadmin12",
        "admin1234567",
        "admin123456789",
        "password1234",
        "password123456",
        "passwordpassword",
        "changeme1234",
        "changemechangeme",
        "changeme123456",
        "123456789012",
        "1234567890123",
        "qwertyuiop12",
        "aimp-admin-password",
    }
)
#: The admin user's roles.
ADMIN_ROLES = (ROLE_ADMIN,)


class StartupRefused(Exception):
    """The gateway must not start; the message says what to fix."""


class AdminCredential(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = ""


class ClientCredential(BaseModel):
    client_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    client_secret: str = Field(min_length=1)
    roles: list[str] = Field(default_factory=list)

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: list[str]) -> list[str]:
        bad = [r for r in roles if not is_valid_role(r)]
        if bad:
            known = ", ".join(ROLE_DESCRIPTIONS)
            raise ValueError(f"unknown role(s) {bad}; use {known} or invoke:<svc>")
        return roles


class Credentials(BaseModel):
    admin: AdminCredential
    clients: list[ClientCredential] = Field(default_factory=list)


def admin_password_problem(username: str, password: str) -> str | None:
    """Why ``password`` may not guard the admin account, or None when it may."""
    if not password:
        return "the admin password is missing"
    lowered = password.lower()
    if lowered in KNOWN_DEFAULT_PASSWORDS or lowered == username.lower():
        return "the admin password is a well-known default"
    if len(password) < MIN_ADMIN_PASSWORD_LEN:
        return f"the admin password is shorter than {MIN_ADMIN_PASSWORD_LEN} characters"
    return None


def parse_credentials(text: str, *, source: str) -> Credentials:
    """Parse and check the file's text; :class:`StartupRefused` says what is wrong."""
    try:
        creds = Credentials.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise StartupRefused(f"{source} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_input=False)
        )
        raise StartupRefused(f"{source} does not match the credentials format ({where})") from None
    problem = admin_password_problem(creds.admin.username, creds.admin.password)
    if problem:
        raise StartupRefused(
            f"refusing to start: {problem} in {source}; set admin.password to a unique "
            f"secret of at least {MIN_ADMIN_PASSWORD_LEN} characters"
        )
    ids = [c.client_id for c in creds.clients]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise StartupRefused(f"{source} lists client(s) {duplicates} more than once")
    return creds


def load_credentials(path: Path) -> Credentials:
    """Read the credentials file; a missing file means a missing admin password."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StartupRefused(
            f"refusing to start: the admin password is missing because {path} does not exist; "
            'create it as {"admin": {"username": "admin", "password": "<12+ chars>"}, '
            '"clients": []} (aimp up writes one) or set AIMP_GATEWAY_CREDENTIALS_FILE'
        ) from None
    return parse_credentials(text, source=str(path))
