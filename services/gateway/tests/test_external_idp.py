"""An external OpenID provider's tokens: JWKS over real HTTP, claims mapped to our roles."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.errors import Unauthorized
from aimp_core.testing import serve_jwks
from aimp_gateway.external_idp import (
    ClaimMapping,
    ExternalIdp,
    claim_values,
    map_roles,
    mapping_problem,
)
from aimp_gateway.keys import SigningKey
from aimp_gateway.tokens import TokenVerifier

OUR_ISSUER = "http://gateway.test"
IDP_ISSUER = "https://idp.example.test/realms/ml"
AUDIENCE = "aimp-gateway"
MAPPING = ClaimMapping(
    role_claim="groups",
    role_map={"ml-admins": ["admin"], "ml-apps": ["invoker"], "auditors": ["auditor"]},
    client_claim="azp",
)


@given(st.lists(st.sampled_from(["ml-admins", "ml-apps", "auditors", "other", "x"]), max_size=6))
def test_roles_are_the_union_of_mapped_claim_values(groups: list[str]) -> None:
    """Every mapped group contributes its roles; unmapped groups grant nothing."""
    expected = {r for g in groups for r in MAPPING.role_map.get(g, ())}
    assert map_roles({"groups": groups}, MAPPING) == expected


def test_dotted_paths_and_space_separated_strings() -> None:
    """A nested claim (realm_access.roles) and a space-separated string are both read."""
    claims: dict[str, Any] = {"realm_access": {"roles": ["a", "b"]}, "scope": "x y"}
    assert claim_values(claims, "realm_access.roles") == ["a", "b"]
    assert claim_values(claims, "scope") == ["x", "y"]
    assert claim_values(claims, "realm_access.missing") == []
    assert claim_values(claims, "scope.deeper") == []


def test_bad_configuration_is_named() -> None:
    """A map to an unknown role, or a symmetric algorithm, is refused with the reason."""
    bad = ClaimMapping(role_map={"g": ["root"]})
    assert "unknown role" in str(mapping_problem(bad, ["RS256"]))
    assert "asymmetric" in str(mapping_problem(MAPPING, ["HS256"]))
    assert mapping_problem(MAPPING, ["RS256", "ES256"]) is None


def _idp(jwks_url: str) -> ExternalIdp:
    return ExternalIdp(
        issuer=IDP_ISSUER, jwks_url=jwks_url, audience=AUDIENCE, mapping=MAPPING, timeout_s=2
    )


def test_external_tokens_verify_with_mapped_roles(signing_key: SigningKey) -> None:
    """A provider token with a mapped group yields our roles; aud, iss and expiry are checked."""
    with serve_jwks(IDP_ISSUER) as idp_keys:
        idp = _idp(idp_keys.jwks_url)
        asyncio.run(idp.refresh())
        verifier = TokenVerifier(signing_key.key_set, issuer=OUR_ISSUER, external=idp)
        token = idp_keys.token([], aud=AUDIENCE, groups=["ml-apps", "other"], azp="shop-app")
        principal = verifier.verify(f"Bearer {token}")
        assert principal.roles == {"invoker"} and principal.client_id == "shop-app"

        for bad in (
            idp_keys.token([], aud="someone-else", groups=["ml-admins"]),
            idp_keys.token([], aud=AUDIENCE, iss="https://evil.test", groups=["ml-admins"]),
            idp_keys.token([], aud=AUDIENCE, expires_in_s=-600, groups=["ml-admins"]),
        ):
            with pytest.raises(Unauthorized):
                verifier.verify(f"Bearer {bad}")


def test_an_unknown_provider_key_is_refused(signing_key: SigningKey) -> None:
    """A token signed by a key the provider does not publish is 401."""
    with serve_jwks(IDP_ISSUER) as idp_keys, serve_jwks(IDP_ISSUER) as stranger:
        idp = _idp(idp_keys.jwks_url)
        asyncio.run(idp.refresh())
        verifier = TokenVerifier(signing_key.key_set, issuer=OUR_ISSUER, external=idp)
        forged = stranger.token([], aud=AUDIENCE, groups=["ml-admins"])
        with pytest.raises(Unauthorized, match="does not know"):
            verifier.verify(f"Bearer {forged}")
