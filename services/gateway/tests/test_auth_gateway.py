"""OAuth2 and RBAC through two real gateways sharing one home (keys, SQL) and one Redis,
with an external OpenID provider, Kafka (Tansu) for the audit trail and a real upstream."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from aimp_core.testing import KeyServer, serve_jwks
from aimp_gateway.asgi import GatewayApp
from aimp_gateway.keys import KeyRing

from .conftest import OipUpstream, register
from .gateways import (
    ADMIN_PASSWORD,
    Backends,
    audit_events,
    client_token,
    new_home,
    sign_in,
    start_gateways,
    wait_until,
)

ISSUER = "http://gateway.auth.test"  # shared, so either gateway accepts the other's tokens
IDP_ISSUER = "https://idp.auth.test/realms/ml"
IDP_AUDIENCE = "aimp"
CLIENTS = {
    "auth-invoker": ["invoker"],
    "auth-identities": ["admin:clients"],
    "auth-auditor": ["auditor"],
}


@dataclass
class Pair:
    a: str
    b: str
    app_a: GatewayApp
    app_b: GatewayApp
    model: str
    secrets: dict[str, str]
    idp: KeyServer
    #: Bearer headers fetched once per client (Argon2 makes each token request slow).
    cached: dict[str, dict[str, str]] = field(default_factory=dict)

    def client_token(self, client_id: str, url: str | None = None) -> str:
        return client_token(url or self.a, client_id, self.secrets[client_id])

    def sign_in(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, Any]:
        return sign_in(self.a, username, password)

    def admin(self) -> dict[str, str]:
        if "admin" not in self.cached:
            self.cached["admin"] = {"Authorization": f"Bearer {self.sign_in()['access_token']}"}
        return self.cached["admin"]

    def bearer(self, client_id: str) -> dict[str, str]:
        if client_id not in self.cached:
            token = self.client_token(client_id)
            self.cached[client_id] = {"Authorization": f"Bearer {token}"}
        return self.cached[client_id]

    def call(self, url: str, token: str) -> httpx.Response:
        """A data-plane call (the upstream's model readiness)."""
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{url}/v2/models/{self.model}/ready", headers=headers)

    @property
    def ring(self) -> KeyRing:
        return self.ring_of(self.app_a)

    @staticmethod
    def ring_of(app: GatewayApp) -> KeyRing:
        ring = app.plane.verifier.ring
        assert ring is not None
        return ring


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, backends: Backends, oip_upstream: OipUpstream
) -> Iterator[Pair]:
    home, secrets, creds = new_home(tmp_path_factory, "auth-pair", CLIENTS)
    model = f"auth-{uuid.uuid4().hex[:6]}"
    register(backends.registry_url, model.upper(), oip_upstream.port)
    with serve_jwks(IDP_ISSUER) as idp:
        a, b = start_gateways(
            backends, home, creds, issuer=ISSUER,
            gateway_lockout_base_delay_s=0,  # lock without waiting out the slow-downs
            gateway_external_issuer=IDP_ISSUER,
            gateway_external_jwks_url=idp.jwks_url,
            gateway_external_audience=IDP_AUDIENCE,
            gateway_external_role_map={"ml-apps": ["invoker"], "ml-auditors": ["auditor"]},
        )  # fmt: skip
        running = Pair(a.url, b.url, a.app, b.app, model, secrets, idp)
        token = running.client_token("auth-invoker")
        wait_until(lambda: running.call(running.b, token).status_code == 200, timeout_s=10)
        yield running
        for gateway in (a, b):
            gateway.server.stop()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "sub": "auth-invoker", "client_id": "auth-invoker", "aud": "aimp",
        "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex, "roles": ["invoker"],
    }  # fmt: skip
    claims.update(changes)
    return claims


def test_bad_tokens_are_refused_on_the_data_plane(pair: Pair) -> None:
    """Expired, wrongly signed, alg none and wrong-audience tokens get 401 from both gateways."""
    key = pair.ring.active
    header = {"alg": "RS256", "kid": key.kid}
    stranger = RSAKey.generate_key(2048, private=True)
    bad = {
        "expired": jwt.encode(header, _claims(exp=int(time.time()) - 600), key.key),
        "wrong-signature": jwt.encode(header, _claims(), stranger),
        "alg-none": f"{_b64({'alg': 'none', 'kid': key.kid})}.{_b64(_claims())}.",
        "wrong-audience": jwt.encode(header, _claims(aud="other-platform"), key.key),
    }
    good = jwt.encode(header, _claims(), key.key)
    for url in (pair.a, pair.b):
        assert pair.call(url, good).status_code == 200  # the same recipe, well made, passes
        for name, token in bad.items():
            resp = pair.call(url, token)
            assert resp.status_code == 401, name
            assert resp.headers["www-authenticate"].startswith("Bearer"), name


def test_revocation_reaches_every_gateway(pair: Pair) -> None:
    """A token revoked at gateway A is refused at once by A and within a second by B."""
    token = pair.client_token("auth-invoker")
    assert pair.call(pair.b, token).status_code == 200  # B has it verified and cached
    resp = httpx.post(
        pair.a + "/oauth/revoke",
        data={"token": token, "token_type_hint": "access_token"},
        auth=("auth-invoker", pair.secrets["auth-invoker"]),
    )
    assert resp.status_code == 200
    assert pair.call(pair.a, token).status_code == 401
    took = wait_until(lambda: pair.call(pair.b, token).status_code == 401, timeout_s=1.0)
    assert took < 1.0
    assert "revoked" in pair.call(pair.b, token).json()["error"]
    introspected = httpx.post(
        pair.b + "/oauth/introspect",
        data={"token": token},
        auth=("auth-auditor", pair.secrets["auth-auditor"]),
    )
    assert introspected.json() == {"active": False}


def test_rotated_key_keeps_old_tokens_valid(pair: Pair) -> None:
    """After POST /admin/keys/rotate both gateways sign with the new key, old tokens still
    work, and both JWKS list old and new keys."""
    old_token = pair.client_token("auth-invoker")
    old_kid = pair.ring.active.kid
    denied = httpx.post(pair.a + "/admin/keys/rotate", headers=pair.bearer("auth-identities"))
    assert denied.status_code == 403
    resp = httpx.post(pair.a + "/admin/keys/rotate", headers=pair.admin())
    assert resp.status_code == 200, resp.text
    states = {k["kid"]: k["state"] for k in resp.json()}
    new_kid = next(kid for kid, state in states.items() if state == "active")
    assert new_kid != old_kid and states[old_kid] == "retired"

    wait_until(lambda: pair.ring_of(pair.app_b).active.kid == new_kid, timeout_s=2.0)
    from_b = pair.client_token("auth-invoker", url=pair.b)
    assert json.loads(base64.urlsafe_b64decode(from_b.split(".")[0] + "=="))["kid"] == new_kid
    for url in (pair.a, pair.b):
        assert pair.call(url, old_token).status_code == 200
        assert pair.call(url, from_b).status_code == 200
        kids = {k["kid"] for k in httpx.get(url + "/.well-known/jwks.json").json()["keys"]}
        assert {old_kid, new_kid} <= kids


def test_refresh_rotation_and_reuse_over_http(pair: Pair) -> None:
    """The password grant returns a refresh token; using it rotates it; replaying the old
    one is invalid_grant and the sign-in's access tokens stop working on both gateways."""
    first = pair.sign_in()
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    rotated = httpx.post(pair.b + "/oauth/token", data=refresh)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert rotated.headers["cache-control"] == "no-store"
    admin = {"Authorization": f"Bearer {second['access_token']}"}
    assert httpx.get(pair.a + "/admin/users", headers=admin).status_code == 200
    replay = httpx.post(pair.a + "/oauth/token", data=refresh)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    for url in (pair.a, pair.b):

        def refused(u: str = url) -> bool:
            return httpx.get(u + "/admin/users", headers=admin).status_code == 401

        wait_until(refused, 1.0)


def test_users_admin_with_audit_events(pair: Pair, kafka_bootstrap: str) -> None:
    """An identities admin creates, re-roles, resets and deletes a user; each change is an
    audit event on Kafka without the password; narrower roles are held to their limits."""
    manager, auditor = pair.bearer("auth-identities"), pair.bearer("auth-auditor")
    name = f"user-{uuid.uuid4().hex[:6]}"
    password = f"pw-{uuid.uuid4().hex}"
    users = pair.a + "/admin/users"
    weak = httpx.post(
        users, headers=manager, json={"username": name, "password": "short", "roles": ["operator"]}
    )
    assert weak.status_code == 400 and "12 characters" in weak.json()["detail"]
    escalate = httpx.post(
        users, headers=manager, json={"username": name, "password": password, "roles": ["admin"]}
    )
    assert escalate.status_code == 403 and "only an admin" in escalate.json()["detail"]
    made = httpx.post(
        users, headers=manager, json={"username": name, "password": password, "roles": ["operator"]}
    )
    assert made.status_code == 201, made.text
    assert made.json() == {"username": name, "roles": ["operator"]}
    assert (
        httpx.post(
            users,
            headers=auditor,
            json={"username": "x1", "password": password, "roles": ["operator"]},
        ).status_code
        == 403
    )
    listed = httpx.get(users, headers=auditor).json()
    assert {"username": name, "roles": ["operator"]} in listed
    assert all(set(u) == {"username", "roles"} for u in listed)
    signed_in = pair.sign_in(name, password)
    assert signed_in["scope"] == "operator"
    changed = httpx.patch(f"{users}/{name}", headers=manager, json={"roles": ["auditor"]})
    assert changed.json()["roles"] == ["auditor"]
    new_password = f"pw-{uuid.uuid4().hex}"
    reset = httpx.put(f"{users}/{name}/password", headers=manager, json={"password": new_password})
    assert reset.status_code == 204
    old_refresh = {"grant_type": "refresh_token", "refresh_token": signed_in["refresh_token"]}
    assert httpx.post(pair.a + "/oauth/token", data=old_refresh).status_code == 400
    assert pair.sign_in(name, new_password)["scope"] == "auditor"
    assert httpx.delete(f"{users}/{name}", headers=manager).status_code == 204
    assert httpx.get(f"{users}/{name}", headers=auditor).status_code == 404

    events = asyncio.run(audit_events(kafka_bootstrap, f"users/{name}", count=4))
    assert [e["action"] for e in events] == [
        "user.create", "user.update", "user.password_reset", "user.delete",
    ]  # fmt: skip
    assert all(e["actor"] == "auth-identities" for e in events)
    assert events[1]["before"]["roles"] == ["operator"] and events[1]["after"]["roles"] == [
        "auditor"
    ]
    assert events[0]["request_id"] == made.headers["x-request-id"]
    raw = json.dumps(events)
    assert password not in raw and new_password not in raw and "argon2" not in raw


def test_client_admin_and_roles_listing(pair: Pair, kafka_bootstrap: str) -> None:
    """Clients can be created, re-roled and disabled (audited); roles are listed with meanings."""
    admin = pair.admin()
    cid = f"app-{uuid.uuid4().hex[:6]}"
    made = httpx.post(
        pair.a + "/admin/clients", headers=admin, json={"client_id": cid, "roles": ["invoker"]}
    )
    assert made.status_code == 201
    secret = made.json()["client_secret"]
    form = {"grant_type": "client_credentials", "client_id": cid, "client_secret": secret}
    assert httpx.post(pair.b + "/oauth/token", data=form).status_code == 200  # form auth
    patched = httpx.patch(f"{pair.a}/admin/clients/{cid}", headers=admin, json={"disabled": True})
    assert patched.json()["disabled"] is True
    assert httpx.post(pair.b + "/oauth/token", data=form).status_code == 400
    roles = httpx.get(pair.a + "/admin/roles", headers=pair.bearer("auth-auditor")).json()
    names = {r["name"] for r in roles}
    assert {
        "admin",
        "operator",
        "invoker",
        "admin:clients",
        "admin:config",
        "admin:throttle",
        "auditor",
        "invoke:<service>",
    } == names
    events = asyncio.run(audit_events(kafka_bootstrap, f"clients/{cid}", count=2))
    assert [e["action"] for e in events] == ["client.create", "client.update"]
    assert secret not in json.dumps(events)


def test_failed_sign_ins_lock_the_user_out(pair: Pair) -> None:
    """Five wrong passwords lock a user: even the right one then gets 429 with Retry-After."""
    admin = pair.admin()
    name, password = f"victim-{uuid.uuid4().hex[:6]}", f"pw-{uuid.uuid4().hex}"
    made = httpx.post(
        pair.a + "/admin/users",
        headers=admin,
        json={"username": name, "password": password, "roles": ["auditor"]},
    )
    assert made.status_code == 201
    for i in range(5):
        url = pair.a if i % 2 == 0 else pair.b  # failures add up across gateways
        wrong = httpx.post(
            url + "/oauth/token",
            data={"grant_type": "password", "username": name, "password": "nope-" + str(i)},
        )
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    locked = httpx.post(
        pair.b + "/oauth/token",
        data={"grant_type": "password", "username": name, "password": password},
    )
    assert locked.status_code == 429
    assert (
        locked.json()["error"] == "invalid_grant" and "locked" in locked.json()["error_description"]
    )
    assert 890 <= int(locked.headers["retry-after"]) <= 900


def test_external_provider_tokens_on_the_data_plane(pair: Pair) -> None:
    """A provider token whose group maps to invoker may call; unmapped groups get 403 and a
    token for another audience 401."""
    ok = pair.idp.token([], aud=IDP_AUDIENCE, groups=["ml-apps"], azp="shop")
    unmapped = pair.idp.token([], aud=IDP_AUDIENCE, groups=["marketing"])
    elsewhere = pair.idp.token([], aud="another-api", groups=["ml-apps"])
    for url in (pair.a, pair.b):
        assert pair.call(url, ok).status_code == 200
        assert pair.call(url, unmapped).status_code == 403
        assert pair.call(url, elsewhere).status_code == 401
