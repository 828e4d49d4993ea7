"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).

HTTP Basic (``client_secret_basic``) or the form (``client_secret_post``),
never both; the public console client names itself without a secret. Failed
secrets count toward the lockout of that client id (:mod:`login_guard`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError
from authlib.oauth2.rfc6749.util import extract_basic_authorization

from aimp_gateway.lockout import Decision, Verdict
from aimp_gateway.login_guard import LoginGuard
from aimp_gateway.passwords import verify_secret
from aimp_gateway.store import Store

#: The admin console is a public client: password grants without client
#: authentication are issued to it.
CONSOLE_CLIENT_ID = "aimp-console"


class TooManyAttempts(OAuth2Error):  # type: ignore[misc]
    """429 with Retry-After: this name failed too often (RFC 6749 error code kept)."""

    status_code = 429

    def __init__(self, error: str, description: str, retry_after_s: float) -> None:
        super().__init__(description=description, status_code=429, error=error)
        self.retry_after_s = retry_after_s

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        headers.append(("Retry-After", str(max(1, math.ceil(self.retry_after_s)))))
        return headers


def refuse_if_locked(decision: Decision, *, error: str, what: str) -> None:
    if decision.allowed:
        return
    wait = max(1, math.ceil(decision.retry_after_s))
    if decision.verdict is Verdict.LOCKED:
        text = f"too many failed sign-ins for this {what}; it is locked for {wait} more s"
    else:
        text = f"sign-ins for this {what} are slowed down after failures; retry in {wait} s"
    raise TooManyAttempts(error, text, decision.retry_after_s)


def shown(text: str, limit: int = 40) -> str:
    """Caller-supplied text made safe for an RFC 6749 ``error_description`` (no quotes,
    backslashes or non-ASCII, which authlib refuses)."""
    return "".join(c for c in text[:limit] if c.isascii() and (c.isalnum() or c in "_-:.*@ "))


def single(form: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The form as a dict; RFC 6749 §3.2 forbids repeating a parameter."""
    params: dict[str, str] = {}
    for key, value in form:
        if key in params:
            raise InvalidRequestError(f"parameter '{shown(key)}' is repeated; send it once")
        params[key] = value
    return params


class ClientAuthenticator:
    """Checks client credentials against the store (Argon2), with lockout."""

    def __init__(self, store: Store, guard: LoginGuard | None = None) -> None:
        self.store = store
        self.guard = guard

    def authenticate(self, params: dict[str, str], authorization: str | None) -> str | None:
        """The authenticated client's id; None when no client credentials were sent
        (or only the public console client's id)."""
        basic_id, basic_secret = (None, None)
        if authorization and authorization[:6].lower() == "basic ":
            basic_id, basic_secret = extract_basic_authorization({"Authorization": authorization})
            if not basic_id:
                raise InvalidClientError(
                    "the Basic credentials are malformed; send base64(client_id:client_secret)",
                    status_code=401,
                )
        form_id, form_secret = params.get("client_id"), params.get("client_secret")
        if basic_id and form_secret:
            raise InvalidRequestError(
                "send client credentials either by HTTP Basic or in the form, not both"
            )
        client_id = basic_id or form_id
        secret = basic_secret if basic_id else form_secret
        if not client_id:
            return None
        if secret is None:
            if basic_id is None and client_id == CONSOLE_CLIENT_ID:
                return None  # the public console client identifies itself
            raise InvalidClientError(
                "client authentication is required: send client_secret",
                status_code=401 if basic_id else 400,
            )
        if self.guard is not None:
            refuse_if_locked(
                self.guard.check("client", client_id), error="invalid_client", what="client"
            )
        client = self.store.get_client(client_id)
        usable = client is not None and not client.disabled
        if not verify_secret(client.secret_hash if usable and client else None, secret):
            if self.guard is not None:
                self.guard.failed("client", client_id)
            raise InvalidClientError(
                "client authentication failed: unknown client, wrong secret or disabled client",
                status_code=401 if basic_id else 400,
            )
        if self.guard is not None:
            self.guard.succeeded("client", client_id)
        return client_id
