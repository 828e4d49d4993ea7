"""The OAuth2 token endpoint's decisions (RFC 6749): client credentials and password grants.

Errors are authlib's RFC 6749 error classes, so the §5.2 body and the 401 +
``WWW-Authenticate: Basic`` for a failed Basic client authentication come
from one well-tested place. Everything here is synchronous (Argon2 and SQL);
the HTTP layer runs it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list

from aimp_gateway.passwords import verify_secret
from aimp_gateway.store import Store
from aimp_gateway.tokens import IssuedToken, TokenIssuer

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_PASSWORD = "password"  # noqa: S105 - a grant type name, not a secret
GRANT_TYPES = (GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORD)
#: The admin console is a public client: password grants without client
#: authentication are issued to it.
CONSOLE_CLIENT_ID = "aimp-console"


def _single(form: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The form as a dict; RFC 6749 §3.2 forbids repeating a parameter."""
    params: dict[str, str] = {}
    for key, value in form:
        if key in params:
            raise InvalidRequestError(f"parameter '{key}' is repeated; send it once")
        params[key] = value
    return params


def _grant(held: Sequence[str], requested: str | None) -> list[str]:
    """The roles to put in the token: all held, or the requested subset."""
    if not requested:
        return list(held)
    wanted = scope_to_list(requested) or []
    missing = sorted(set(wanted) - set(held))
    if missing:
        raise InvalidScopeError(f"scope asks for role(s) {' '.join(missing)} not granted to you")
    return wanted


class TokenEndpoint:
    """Authenticates clients and users against the store and issues tokens."""

    def __init__(self, store: Store, issuer: TokenIssuer) -> None:
        self.store = store
        self.issuer = issuer

    def _client(self, params: dict[str, str], authorization: str | None) -> str | None:
        """The authenticated client's id, None when no client credentials were sent."""
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
        client = self.store.get_client(client_id)
        usable = client is not None and not client.disabled
        if not verify_secret(client.secret_hash if usable and client else None, secret):
            raise InvalidClientError(
                "client authentication failed: unknown client, wrong secret or disabled client",
                status_code=401 if basic_id else 400,
            )
        return client_id

    def token(self, form: Sequence[tuple[str, str]], authorization: str | None) -> IssuedToken:
        """Handle one token request; raises authlib ``OAuth2Error`` subclasses."""
        params = _single(form)
        grant_type = params.get("grant_type")
        if not grant_type:
            raise InvalidRequestError("grant_type is missing; use client_credentials or password")
        if grant_type not in GRANT_TYPES:
            shown = "".join(c for c in grant_type[:40] if c.isalnum() or c in "_-:.")
            error = UnsupportedGrantTypeError(shown)
            error.description = (
                f"grant_type '{shown}' is not supported; use client_credentials or password"
            )
            raise error
        client_id = self._client(params, authorization)
        if grant_type == GRANT_CLIENT_CREDENTIALS:
            if client_id is None:
                raise InvalidClientError(
                    "client_credentials needs client authentication: HTTP Basic or "
                    "client_id and client_secret in the form",
                    status_code=401,
                )
            client = self.store.get_client(client_id)
            assert client is not None
            roles = _grant(client.roles, params.get("scope"))
            return self.issuer.issue(subject=client_id, client_id=client_id, roles=roles)
        username, password = params.get("username"), params.get("password")
        if not username or not password:
            raise InvalidRequestError("the password grant needs username and password")
        user = self.store.get_user(username)
        if not verify_secret(user.password_hash if user else None, password) or user is None:
            raise InvalidGrantError("username or password is wrong")
        roles = _grant(user.roles, params.get("scope"))
        return self.issuer.issue(
            subject=username, client_id=client_id or CONSOLE_CLIENT_ID, roles=roles
        )
