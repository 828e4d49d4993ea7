"""Token verification and role decisions shared by every service."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from aimp_core.auth import (
    bearer_token,
    can_administer,
    can_invoke,
    can_operate,
    is_valid_role,
    verify_with_keys,
)
from aimp_core.errors import Unauthorized

ISSUER = "http://gw.test"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER = RSAKey.generate_key(2048, parameters={"kid": "k1"})
KEYS = KeySet([KEY])


def _token(key: RSAKey = KEY, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "app",
        "aud": "aimp",
        "iat": now,
        "exp": now + 300,
        "jti": "j1",
        "client_id": "app",
        "roles": ["invoker"],
    }
    claims.update(overrides)
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


def test_valid_token_gives_the_principal() -> None:
    """A well-signed, current token yields its client and roles."""
    principal = verify_with_keys(_token(), KEYS, issuer=ISSUER)
    assert principal.client_id == "app"
    assert principal.roles == frozenset({"invoker"})


@pytest.mark.parametrize(
    "token",
    [
        _token(exp=int(time.time()) - 600),
        _token(aud="someone-else"),
        _token(iss="http://evil"),
        _token(key=OTHER),
        "not.a.jwt",
    ],
    ids=["expired", "audience", "issuer", "signature", "garbage"],
)
def test_bad_tokens_are_401(token: str) -> None:
    """Expired, wrong-audience, wrong-issuer, wrongly signed and malformed tokens are refused."""
    with pytest.raises(Unauthorized):
        verify_with_keys(token, KEYS, issuer=ISSUER)


def test_alg_none_is_refused() -> None:
    """An unsigned token (alg: none) never passes, whatever its claims say."""
    import base64
    import json

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "aimp", "exp": now + 60, "roles": ["admin"]}
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    with pytest.raises(Unauthorized):
        verify_with_keys(unsigned, KEYS, issuer=ISSUER)


def test_missing_or_wrong_scheme_is_401_with_bearer_challenge() -> None:
    """No header, or a non-Bearer scheme, is 401 with a Bearer challenge."""
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(Unauthorized) as info:
            bearer_token(header)
        assert info.value.headers["WWW-Authenticate"].startswith("Bearer")
    assert bearer_token("Bearer abc.def") == "abc.def"


@given(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
def test_invoke_roles_cover_exactly_their_service(service: str) -> None:
    """invoke:<svc> allows that service only; invoker and admin allow every service."""
    assert can_invoke([f"invoke:{service}"], service)
    assert not can_invoke([f"invoke:{service}"], service + "x")
    assert can_invoke(["invoker"], service)
    assert can_invoke(["admin"], service)
    assert not can_invoke(["operator"], service)
    assert is_valid_role(f"invoke:{service}")


def test_admin_and_operator_powers() -> None:
    """Only admin administers; operator and admin operate; invoker does neither."""
    assert can_administer(["admin"]) and not can_administer(["operator"])
    assert can_operate(["operator"]) and can_operate(["admin"]) and not can_operate(["invoker"])
    assert (
        not is_valid_role("root")
        and not is_valid_role("invoke:")
        and not is_valid_role("invoke:a b")
    )
