"""The token endpoint's decisions (RFC 6749): grants, client authentication, scope, errors."""

from __future__ import annotations

import base64

import pytest
from authlib.oauth2.rfc6749.errors import OAuth2Error

from aimp_core.errors import Unauthorized
from aimp_gateway.keys import SigningKey
from aimp_gateway.oauth import CONSOLE_CLIENT_ID, TokenEndpoint
from aimp_gateway.passwords import hash_secret
from aimp_gateway.store import Store
from aimp_gateway.tokens import TokenIssuer, TokenVerifier

ISSUER = "http://gateway.test"


#: Argon2 is slow on purpose: hash once for the module.
APP_HASH = hash_secret("app-secret")
ALICE_HASH = hash_secret("alice-password-123")


@pytest.fixture
def endpoint(store: Store, signing_key: SigningKey) -> TokenEndpoint:
    store.put_client("app", APP_HASH, ["invoke:resnet", "invoke:bert"])
    store.put_user("alice", ALICE_HASH, ["operator"])
    return TokenEndpoint(store, TokenIssuer(signing_key, issuer=ISSUER, ttl_s=60))


@pytest.fixture
def verifier(signing_key: SigningKey) -> TokenVerifier:
    return TokenVerifier(signing_key.key_set, issuer=ISSUER)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _error(
    endpoint: TokenEndpoint, form: list[tuple[str, str]], auth: str | None = None
) -> tuple[int, dict[str, str], list[tuple[str, str]]]:
    with pytest.raises(OAuth2Error) as err:
        endpoint.token(form, auth)
    status, body, headers = err.value()
    return status, body, headers


def test_client_credentials_with_basic(endpoint: TokenEndpoint, verifier: TokenVerifier) -> None:
    """HTTP Basic client authentication issues a token with the client's roles."""
    issued = endpoint.token([("grant_type", "client_credentials")], basic("app", "app-secret"))
    principal = verifier.verify(f"Bearer {issued.access_token}")
    assert principal.client_id == "app" and principal.subject == "app"
    assert principal.roles == {"invoke:resnet", "invoke:bert"}
    assert issued.scope == "invoke:bert invoke:resnet"


def test_client_credentials_in_form(endpoint: TokenEndpoint, verifier: TokenVerifier) -> None:
    """Form client authentication (client_secret_post) works too."""
    form = [
        ("grant_type", "client_credentials"),
        ("client_id", "app"),
        ("client_secret", "app-secret"),
    ]
    principal = verifier.verify(f"Bearer {endpoint.token(form, None).access_token}")
    assert principal.client_id == "app"


def test_scope_narrows_roles_and_refuses_others(
    endpoint: TokenEndpoint, verifier: TokenVerifier
) -> None:
    """A requested scope narrows the roles; asking for a role not held is invalid_scope."""
    issued = endpoint.token(
        [("grant_type", "client_credentials"), ("scope", "invoke:bert")], basic("app", "app-secret")
    )
    assert verifier.verify(f"Bearer {issued.access_token}").roles == {"invoke:bert"}
    status, body, _ = _error(
        endpoint,
        [("grant_type", "client_credentials"), ("scope", "admin")],
        basic("app", "app-secret"),
    )
    assert (status, body["error"]) == (400, "invalid_scope")


def test_wrong_secret_with_basic_is_401_with_www_authenticate(endpoint: TokenEndpoint) -> None:
    """A failed Basic client authentication is 401 invalid_client with WWW-Authenticate: Basic."""
    status, body, headers = _error(
        endpoint, [("grant_type", "client_credentials")], basic("app", "nope")
    )
    assert (status, body["error"]) == (401, "invalid_client")
    assert any(k == "WWW-Authenticate" and v.startswith("Basic") for k, v in headers)


@pytest.mark.parametrize("client_id", ["app", "ghost"])
def test_wrong_secret_in_form_is_400_invalid_client(
    endpoint: TokenEndpoint, client_id: str
) -> None:
    """A wrong secret or unknown client in the form is 400 invalid_client (same answer for both)."""
    form = [("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", "x")]
    status, body, _ = _error(endpoint, form)
    assert (status, body["error"]) == (400, "invalid_client")
    assert "x" not in body.get("error_description", "").split()


def test_disabled_client_cannot_authenticate(endpoint: TokenEndpoint, store: Store) -> None:
    """A disabled client gets invalid_client even with the right secret."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from aimp_gateway.store import ClientRow

    with Session(store.engine) as s:
        s.execute(update(ClientRow).where(ClientRow.client_id == "app").values(disabled=True))
        s.commit()
    _, body, _ = _error(
        endpoint, [("grant_type", "client_credentials")], basic("app", "app-secret")
    )
    assert body["error"] == "invalid_client"


def test_client_credentials_without_client_is_invalid_client(endpoint: TokenEndpoint) -> None:
    """client_credentials without any client authentication is refused."""
    status, body, _ = _error(endpoint, [("grant_type", "client_credentials")])
    assert body["error"] == "invalid_client" and status == 401


def test_password_grant_issues_user_roles(endpoint: TokenEndpoint, verifier: TokenVerifier) -> None:
    """The password grant issues the user's roles to the console client."""
    form = [("grant_type", "password"), ("username", "alice"), ("password", "alice-password-123")]
    principal = verifier.verify(f"Bearer {endpoint.token(form, None).access_token}")
    assert principal.subject == "alice" and principal.roles == {"operator"}
    assert principal.client_id == CONSOLE_CLIENT_ID


@pytest.mark.parametrize(
    ("form", "error"),
    [
        (
            [("grant_type", "password"), ("username", "alice"), ("password", "wrong")],
            "invalid_grant",
        ),
        (
            [("grant_type", "password"), ("username", "bob"), ("password", "whatever")],
            "invalid_grant",
        ),
        ([("grant_type", "password"), ("username", "alice")], "invalid_request"),
        ([("grant_type", "authorization_code"), ("code", "x")], "unsupported_grant_type"),
        ([("client_id", "app")], "invalid_request"),
        ([("grant_type", "password"), ("grant_type", "password")], "invalid_request"),
        (
            [
                ("grant_type", "password"),
                ("client_id", "app"),
                ("username", "a"),
                ("password", "b"),
            ],
            "invalid_client",
        ),
    ],
)
def test_rfc6749_errors(endpoint: TokenEndpoint, form: list[tuple[str, str]], error: str) -> None:
    """Each malformed or failed request gets its RFC 6749 §5.2 error code with status 400/401."""
    status, body, _ = _error(endpoint, form)
    assert body["error"] == error
    assert status in (400, 401)


def test_basic_and_form_secret_together_is_invalid_request(endpoint: TokenEndpoint) -> None:
    """Using two client authentication methods at once is invalid_request."""
    form = [("grant_type", "client_credentials"), ("client_secret", "app-secret")]
    status, body, _ = _error(endpoint, form, basic("app", "app-secret"))
    assert (status, body["error"]) == (400, "invalid_request")


def test_tokens_name_this_issuer(endpoint: TokenEndpoint, signing_key: SigningKey) -> None:
    """Tokens carry this gateway's issuer: a verifier expecting another issuer rejects them."""
    issued = endpoint.token([("grant_type", "client_credentials")], basic("app", "app-secret"))
    wrong = TokenVerifier(signing_key.key_set, issuer="http://elsewhere")
    with pytest.raises(Unauthorized, match="token rejected"):
        wrong.verify(f"Bearer {issued.access_token}")
