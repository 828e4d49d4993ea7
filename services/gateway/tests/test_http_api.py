"""OAuth2 over HTTP, discovery documents, the admin API and ops endpoints of a real gateway."""

from __future__ import annotations

import stat
import uuid

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "correct-horse-battery-staple"


def _admin_headers(gateway) -> dict[str, str]:  # type: ignore[no-untyped-def]
    resp = httpx.post(
        f"{gateway.url}/oauth/token",
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
    )
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def test_token_endpoint_basic_auth(gateway) -> None:  # type: ignore[no-untyped-def]
    """client_credentials with HTTP Basic answers RFC 6749 §5.1 with Cache-Control: no-store."""
    resp = httpx.post(
        f"{gateway.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("invoker-app", gateway.secrets["invoker-app"]),
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "invoker"
    assert body["expires_in"] == gateway.settings.gateway_access_token_ttl_s == 900
    assert resp.headers["cache-control"] == "no-store"
    jwks = KeySet.import_key_set(httpx.get(f"{gateway.url}/.well-known/jwks.json").json())
    claims = jwt.decode(body["access_token"], jwks).claims
    assert claims["iss"] == gateway.settings.token_issuer and claims["aud"] == "aimp"
    assert claims["client_id"] == claims["sub"] == "invoker-app"


def test_token_endpoint_errors(gateway) -> None:  # type: ignore[no-untyped-def]
    """Bad Basic auth is 401 + WWW-Authenticate: Basic; JSON bodies and odd grants are 400."""
    url = f"{gateway.url}/oauth/token"
    bad = httpx.post(url, data={"grant_type": "client_credentials"}, auth=("invoker-app", "no"))
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    assert bad.headers["www-authenticate"].startswith("Basic")
    assert bad.headers["cache-control"] == "no-store"
    as_json = httpx.post(url, json={"grant_type": "client_credentials"})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    odd = httpx.post(url, data={"grant_type": "implicit"})
    assert odd.status_code == 400 and odd.json()["error"] == "unsupported_grant_type"
    assert set(odd.json()) == {"error", "error_description"}


def test_discovery_documents(gateway) -> None:  # type: ignore[no-untyped-def]
    """The JWKS holds only public key material; the metadata names endpoints and methods."""
    keys = httpx.get(f"{gateway.url}/.well-known/jwks.json").json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(keys[0])
    meta = httpx.get(f"{gateway.url}/.well-known/openid-configuration").json()
    issuer = gateway.settings.token_issuer
    assert meta["issuer"] == issuer and meta["token_endpoint"] == f"{issuer}/oauth/token"
    assert meta["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert meta["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert set(meta["grant_types_supported"]) == {
        "client_credentials",
        "password",
        "refresh_token",
    }
    assert meta["revocation_endpoint"] == f"{issuer}/oauth/revoke"
    assert meta["introspection_endpoint"] == f"{issuer}/oauth/introspect"
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]


def test_signing_key_file_is_private(gateway) -> None:  # type: ignore[no-untyped-def]
    """The generated signing key is a file only its owner can read (0600)."""
    mode = stat.S_IMODE(gateway.settings.signing_key_path.stat().st_mode)
    assert mode == 0o600


def test_admin_client_lifecycle(gateway) -> None:  # type: ignore[no-untyped-def]
    """An admin creates a client (secret once), lists it without secrets, and deletes it."""
    admin = _admin_headers(gateway)
    cid = f"app-{uuid.uuid4().hex[:8]}"
    created = httpx.post(
        f"{gateway.url}/admin/clients", headers=admin, json={"client_id": cid, "roles": ["invoker"]}
    )
    assert created.status_code == 201
    secret = created.json()["client_secret"]
    assert created.json() == {"client_id": cid, "client_secret": secret, "roles": ["invoker"]}
    assert len(secret) >= 40

    token = httpx.post(
        f"{gateway.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
    )
    assert token.status_code == 200

    again = httpx.post(
        f"{gateway.url}/admin/clients", headers=admin, json={"client_id": cid, "roles": ["invoker"]}
    )
    assert again.status_code == 409 and cid in again.json()["detail"]

    listed = httpx.get(f"{gateway.url}/admin/clients", headers=admin)
    assert listed.status_code == 200
    mine = [c for c in listed.json() if c["client_id"] == cid]
    assert mine and set(mine[0]) == {"client_id", "roles", "created_at", "disabled"}
    assert secret not in listed.text and "argon2" not in listed.text

    assert httpx.delete(f"{gateway.url}/admin/clients/{cid}", headers=admin).status_code == 204
    assert httpx.delete(f"{gateway.url}/admin/clients/{cid}", headers=admin).status_code == 404
    gone = httpx.post(
        f"{gateway.url}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
    )
    assert gone.status_code == 400 and gone.json()["error"] == "invalid_client"


def test_admin_rejects_bad_roles_and_non_admins(gateway) -> None:  # type: ignore[no-untyped-def]
    """An unknown role is 422 naming it; non-admins get 403 and anonymous callers 401."""
    admin = _admin_headers(gateway)
    bad = httpx.post(
        f"{gateway.url}/admin/clients",
        headers=admin,
        json={"client_id": "x-bad-role", "roles": ["invoker", "superuser"]},
    )
    assert bad.status_code == 422 and "superuser" in bad.json()["detail"]
    invoker = gateway.auth("invoker-app")
    assert httpx.get(f"{gateway.url}/admin/clients", headers=invoker).status_code == 403
    anon = httpx.get(f"{gateway.url}/admin/clients")
    assert anon.status_code == 401 and anon.headers["www-authenticate"].startswith("Bearer")


def test_ops_endpoints(gateway) -> None:  # type: ignore[no-untyped-def]
    """readyz checks registry and Redis; OIP health and metrics answer; metrics name routes."""
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200 and set(ready.json()["checks"]) == {"registry", "redis"}
    assert httpx.get(f"{gateway.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{gateway.url}/v2/health/ready").status_code == 200
    assert httpx.get(f"{gateway.url}/v2").json()["extensions"] == []
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'route="/v2/models/{model}/..."' in metrics
    assert "/oauth/token" in httpx.get(f"{gateway.url}/openapi.json").json()["paths"]


def test_unknown_v2_path_is_oip_error(gateway) -> None:  # type: ignore[no-untyped-def]
    """A /v2 path the gateway does not serve answers 404 in the {"error"} shape."""
    resp = httpx.get(f"{gateway.url}/v2/repository/index")
    assert resp.status_code == 404 and set(resp.json()) == {"error"}
