"""The policy admin API over HTTP (ASGI), with a temp SQLite and a real key set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimp_throttle.app import create_app
from aimp_throttle.settings import ThrottleSettings

from .conftest import KeyServer

BASE = "/admin/throttle/policies"


@pytest.fixture
async def client(
    tmp_path: Path, throttle_keys: KeyServer, throttle_redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ThrottleSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 't.db'}",
        redis_url=throttle_redis_url,
    )
    app = create_app(settings, verifier=throttle_keys.verifier())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://throttle") as c:
            yield c


@pytest.fixture
def admin(throttle_keys: KeyServer) -> dict[str, str]:
    return throttle_keys.headers("admin")


def policy(**overrides: Any) -> dict[str, Any]:
    return {
        "client_id": "demo-app",
        "service": "classifier",
        "rate": 50.5,
        "burst": 100,
        "quota_day": 100_000,
        "concurrency": 8,
        "on_redis_down": "closed",
        **overrides,
    }


async def test_create_replace_get_list_delete(
    client: httpx.AsyncClient, admin: dict[str, str], throttle_keys: KeyServer
) -> None:
    """PUT creates (201) then replaces (200), GET and list show it, DELETE removes it."""
    resp = await client.put(f"{BASE}/demo.classifier", json=policy(), headers=admin)
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == f"{BASE}/demo.classifier"
    created = resp.json()
    assert created["rate"] == 50.5 and created["on_redis_down"] == "closed"

    replacement = policy(rate=5, burst=5, quota_day=None, concurrency=None, service=None)
    resp = await client.put(f"{BASE}/demo.classifier", json=replacement, headers=admin)
    assert resp.status_code == 200, resp.text
    replaced = resp.json()
    assert (replaced["rate"], replaced["burst"], replaced["quota_day"], replaced["service"]) == (
        5.0,
        5,
        None,
        None,
    )
    assert replaced["created_at"] == created["created_at"]
    assert datetime.fromisoformat(replaced["updated_at"]) >= datetime.fromisoformat(
        created["updated_at"]
    )
    assert datetime.fromisoformat(replaced["created_at"]).utcoffset() is not None

    operator = throttle_keys.headers("operator")
    resp = await client.get(f"{BASE}/demo.classifier", headers=operator)
    assert resp.status_code == 200 and resp.json() == replaced

    await client.put(f"{BASE}/a-first", json=policy(), headers=admin)
    resp = await client.get(BASE, headers=operator)
    assert [p["policy_id"] for p in resp.json()["policies"]] == ["a-first", "demo.classifier"]

    resp = await client.delete(f"{BASE}/demo.classifier", headers=admin)
    assert resp.status_code == 204 and resp.content == b""
    resp = await client.get(f"{BASE}/demo.classifier", headers=admin)
    assert resp.status_code == 404
    resp = await client.get(BASE, headers=admin)
    assert [p["policy_id"] for p in resp.json()["policies"]] == ["a-first"]


async def test_missing_policy_is_404_with_a_hint(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """GET and DELETE of an unknown id answer 404 problems that say how to create one."""
    resp = await client.get(f"{BASE}/nope", headers=admin)
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "no throttle policy 'nope'" in resp.json()["detail"]
    assert "PUT" in resp.json()["detail"]
    assert (await client.delete(f"{BASE}/nope", headers=admin)).status_code == 404


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"rate": 0}, "rate: Input should be greater than or equal to 0.001"),
        ({"burst": 1.5}, "burst: Input should be a valid integer"),
        ({"on_redis_down": "sometimes"}, "on_redis_down: Input should be 'open' or 'closed'"),
        ({"service": "bad name"}, "service: Value error, must be 1-63 characters"),
        ({"quota_day": 0}, "quota_day: Input should be greater than or equal to 1"),
        ({"ratelimit": 3}, "ratelimit: Extra inputs are not permitted"),
    ],
)
async def test_invalid_body_is_422_naming_the_field(
    client: httpx.AsyncClient, admin: dict[str, str], overrides: dict[str, Any], fragment: str
) -> None:
    """An invalid body is a 422 whose detail names the field and what it allows."""
    resp = await client.put(f"{BASE}/p1", json=policy(**overrides), headers=admin)
    assert resp.status_code == 422
    assert fragment in resp.json()["detail"]
    assert (await client.get(f"{BASE}/p1", headers=admin)).status_code == 404


async def test_invalid_policy_id_is_400_saying_what_is_allowed(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A policy id outside the rule is a 400 that quotes the rule."""
    resp = await client.put(f"{BASE}/has%20space", json=policy(), headers=admin)
    assert resp.status_code == 400
    assert resp.json()["detail"] == (
        "policy_id 'has space' is not valid: use 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
    )
    resp = await client.get(f"{BASE}/{'x' * 65}", headers=admin)
    assert resp.status_code == 400


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    """Without a token every route answers 401 with a Bearer challenge."""
    for method, url in [("GET", BASE), ("GET", f"{BASE}/p"), ("DELETE", f"{BASE}/p")]:
        resp = await client.request(method, url)
        assert resp.status_code == 401, (method, url)
        assert resp.headers["www-authenticate"].startswith("Bearer")
    resp = await client.put(f"{BASE}/p", json={"rate": "junk"})
    assert resp.status_code == 401  # authentication comes before body validation


async def test_expired_token_is_401(client: httpx.AsyncClient, throttle_keys: KeyServer) -> None:
    """An admin token past its expiry (beyond the leeway) is rejected."""
    token = throttle_keys.token(["admin"], expires_in_s=-120)
    resp = await client.get(BASE, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401


async def test_invoker_is_403(client: httpx.AsyncClient, throttle_keys: KeyServer) -> None:
    """A business app's invoker token may neither read nor change policies."""
    invoker = throttle_keys.headers("invoker")
    assert (await client.get(BASE, headers=invoker)).status_code == 403
    resp = await client.put(f"{BASE}/p", json=policy(), headers=invoker)
    assert resp.status_code == 403
    assert "changing throttle policies" in resp.json()["detail"]


async def test_operator_reads_but_cannot_write(
    client: httpx.AsyncClient, throttle_keys: KeyServer
) -> None:
    """An operator may list policies but not create or delete them."""
    operator = throttle_keys.headers("operator")
    assert (await client.get(BASE, headers=operator)).status_code == 200
    assert (await client.put(f"{BASE}/p", json=policy(), headers=operator)).status_code == 403
    assert (await client.delete(f"{BASE}/p", headers=operator)).status_code == 403


async def test_openapi_lists_rules_checks_and_usage(client: httpx.AsyncClient) -> None:
    """The OpenAPI document covers policies, plans, assignments, checks and usage."""
    spec = (await client.get("/openapi.json")).json()
    assert "Not enforced" not in spec["info"]["description"]
    for path in (
        f"{BASE}/{{policy_id}}",
        f"{BASE}/{{policy_id}}/warmup",
        "/admin/throttle/plans/{plan_id}",
        "/admin/throttle/clients/{client_id}",
        "/admin/throttle/usage/{client_id}",
        "/v1/check",
        "/v1/release",
    ):
        assert path in spec["paths"], path


async def test_readyz_checks_sql_and_redis(client: httpx.AsyncClient) -> None:
    """With its database and Redis reachable the service is ready."""
    resp = await client.get("/readyz")
    assert resp.status_code == 200 and resp.json()["checks"] == ["sql", "redis"]
