"""Token issue and verification: every kind of bad token is a 401."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from aimp_core.auth import LEEWAY_S
from aimp_core.errors import Unauthorized
from aimp_gateway.keys import SigningKey
from aimp_gateway.tokens import TokenIssuer, TokenVerifier

ISSUER = "http://gateway.test"
TTL = 900


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "app",
        "aud": "aimp",
        "iat": now,
        "exp": now + TTL,
        "jti": "j1",
        "client_id": "app",
        "roles": ["invoker"],
        "scope": "invoker",
    }
    claims.update(overrides)
    return claims


@pytest.fixture
def issuer(signing_key: SigningKey) -> TokenIssuer:
    return TokenIssuer(signing_key, issuer=ISSUER, ttl_s=TTL)


@pytest.fixture
def verifier(signing_key: SigningKey) -> TokenVerifier:
    return TokenVerifier(signing_key.key_set, issuer=ISSUER)


def _sign(key: SigningKey, claims: dict[str, Any]) -> str:
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key.key)


def test_issued_token_verifies_with_roles_and_kid(
    issuer: TokenIssuer, verifier: TokenVerifier, signing_key: SigningKey
) -> None:
    """A freshly issued token verifies and carries subject, client, roles, scope and kid."""
    issued = issuer.issue(subject="app", client_id="app", roles=["invoke:b", "invoke:a"])
    principal = verifier.verify(f"Bearer {issued.access_token}")
    assert principal.client_id == "app"
    assert principal.roles == frozenset({"invoke:a", "invoke:b"})
    assert issued.scope == "invoke:a invoke:b"
    assert issued.expires_in == TTL
    header = json.loads(base64.urlsafe_b64decode(issued.access_token.split(".")[0] + "=="))
    assert header["kid"] == signing_key.kid and header["alg"] == "RS256"
    claims = jwt.decode(issued.access_token, signing_key.key_set).claims
    assert claims["aud"] == "aimp" and claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == TTL and claims["jti"]


def test_expired_token_is_401(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    """A token past exp (beyond the leeway) is rejected with 401."""
    issued = issuer.issue(subject="app", client_id="app", roles=["invoker"], now=1_000_000)
    with pytest.raises(Unauthorized) as err:
        verifier.verify(f"Bearer {issued.access_token}", now=1_000_000 + TTL + LEEWAY_S + 1)
    assert err.value.status == 401
    assert err.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_cached_token_still_expires(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    """A token verified once (and cached) is rejected once it expires."""
    now = time.time()
    issued = issuer.issue(subject="app", client_id="app", roles=["invoker"], now=now)
    verifier.verify(f"Bearer {issued.access_token}", now=now)
    with pytest.raises(Unauthorized):
        verifier.verify(f"Bearer {issued.access_token}", now=now + TTL + LEEWAY_S + 1)


def test_wrong_signature_is_401(signing_key: SigningKey, verifier: TokenVerifier) -> None:
    """A token signed by another key, even claiming our kid, is rejected."""
    other = SigningKey(RSAKey.generate_key(2048, private=True))
    forged = jwt.encode({"alg": "RS256", "kid": signing_key.kid}, _claims(), other.key)
    with pytest.raises(Unauthorized):
        verifier.verify(f"Bearer {forged}")


def test_tampered_payload_is_401(signing_key: SigningKey, verifier: TokenVerifier) -> None:
    """Changing the claims of a signed token (adding admin) breaks its signature."""
    header, _, signature = _sign(signing_key, _claims()).split(".")
    tampered = f"{header}.{_b64(_claims(roles=['admin']))}.{signature}"
    with pytest.raises(Unauthorized):
        verifier.verify(f"Bearer {tampered}")


def test_alg_none_is_401(signing_key: SigningKey, verifier: TokenVerifier) -> None:
    """An unsigned token (alg none) is rejected."""
    token = f"{_b64({'alg': 'none', 'kid': signing_key.kid})}.{_b64(_claims())}."
    with pytest.raises(Unauthorized):
        verifier.verify(f"Bearer {token}")


def test_hs256_with_public_key_is_401(signing_key: SigningKey, verifier: TokenVerifier) -> None:
    """Algorithm confusion (HS256 keyed with the public key) is rejected."""
    secret = OctKey.import_key(json.dumps(signing_key.public_jwk).encode())
    token = jwt.encode({"alg": "HS256", "kid": signing_key.kid}, _claims(), secret)
    with pytest.raises(Unauthorized):
        verifier.verify(f"Bearer {token}")


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(_claims(aud="someone-else"), id="wrong-audience"),
        pytest.param(_claims(iss="http://evil.test"), id="wrong-issuer"),
        pytest.param({k: v for k, v in _claims().items() if k != "exp"}, id="no-exp"),
        pytest.param({k: v for k, v in _claims().items() if k != "aud"}, id="no-audience"),
    ],
)
def test_bad_claims_are_401(
    signing_key: SigningKey, verifier: TokenVerifier, claims: dict[str, Any]
) -> None:
    """A well-signed token with the wrong audience, issuer or missing exp is rejected."""
    with pytest.raises(Unauthorized):
        verifier.verify(f"Bearer {_sign(signing_key, claims)}")


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer not.a.jwt"])
def test_missing_or_malformed_header_is_401(verifier: TokenVerifier, header: str | None) -> None:
    """No header, another scheme or garbage is a 401 with WWW-Authenticate: Bearer."""
    with pytest.raises(Unauthorized) as err:
        verifier.verify(header)
    assert err.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_cache_is_bounded(issuer: TokenIssuer, signing_key: SigningKey) -> None:
    """The verified-token cache never holds more than its size."""
    small = TokenVerifier(signing_key.key_set, issuer=ISSUER, cache_size=3)
    for i in range(6):
        token = issuer.issue(subject=f"c{i}", client_id=f"c{i}", roles=["invoker"])
        assert small.verify(f"Bearer {token.access_token}").client_id == f"c{i}"
    assert len(small._cache) == 3
