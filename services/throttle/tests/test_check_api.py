"""POST /v1/check and /v1/release, and usage: the gateway's decision for other callers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimp_core.net import free_port
from aimp_throttle.app import create_app
from aimp_throttle.settings import ThrottleSettings

from .conftest import KeyServer

POLICIES = "/admin/throttle/policies"


async def _app_client(
    tmp_path: Path, keys: KeyServer, redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ThrottleSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 't.db'}",
        redis_url=redis_url,
        throttle_redis_socket_timeout_s=0.2,
        throttle_default_rate_per_s=0.5,
        throttle_default_burst=3,
    )
    app = create_app(settings, verifier=keys.verifier())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://throttle") as c:
            yield c


@pytest.fixture
async def client(
    tmp_path: Path, throttle_keys: KeyServer, throttle_redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _app_client(tmp_path, throttle_keys, throttle_redis_url):
        yield c


@pytest.fixture
def admin(throttle_keys: KeyServer) -> dict[str, str]:
    return throttle_keys.headers("admin")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def put(client: httpx.AsyncClient, admin: dict[str, str], pid: str, **body: Any) -> None:
    resp = await client.put(
        f"{POLICIES}/{pid}", json={"on_redis_down": "open", **body}, headers=admin
    )
    assert resp.status_code in (200, 201), resp.text


async def test_check_admits_then_429_naming_the_limit(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A burst of 3 admits 3 checks with RateLimit headers, then a 429 names the policy."""
    cid = unique("acme")
    await put(client, admin, unique("slow"), client_id=cid, rate=0.01, burst=3)
    body = {"client_id": cid, "service": "classifier"}
    for left in (2, 1, 0):
        resp = await client.post("/v1/check", json=body, headers=admin)
        assert resp.status_code == 200, resp.text
        assert resp.json()["allowed"] is True and resp.json()["mode"] == "redis"
        assert resp.json()["limits"][0]["rate_remaining"] == left
        assert resp.headers["ratelimit-policy"].endswith('";q=1;w=100;burst=3')
        assert f";r={left};" in resp.headers["ratelimit"]
    resp = await client.post("/v1/check", json=body, headers=admin)
    assert resp.status_code == 429
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert 99 <= int(resp.headers["retry-after"]) <= 101
    assert f"client '{cid}' is over its rate limit 'slow-" in resp.json()["detail"]
    assert ";r=0;t=10" in resp.headers["ratelimit"]


async def test_daily_quota_admits_exactly_n(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A quota of 7 calls a day admits exactly 7 checks; usage then shows 7 used."""
    cid = unique("quota")
    await put(client, admin, unique("q"), client_id=cid, rate=1000, burst=1000, quota_day=7)
    body = {"client_id": cid, "service": "svc"}
    statuses = [(await client.post("/v1/check", json=body, headers=admin)).status_code
                for _ in range(12)]  # fmt: skip
    assert statuses == [200] * 7 + [429] * 5
    refused = await client.post("/v1/check", json=body, headers=admin)
    assert "has used its daily quota of 7 calls" in refused.json()["detail"]
    usage = (await client.get(f"/admin/throttle/usage/{cid}", headers=admin)).json()
    [limit] = usage["limits"]
    assert (limit["quota_day"], limit["used_day"], limit["used_month"]) == (7, 7, 7)


async def test_concurrency_lease_and_release(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """With concurrency 1 a second check waits for the first lease's release."""
    cid = unique("conc")
    await put(client, admin, unique("c"), client_id=cid, service="svc", rate=1000, burst=100,
              concurrency=1)  # fmt: skip
    body = {"client_id": cid, "service": "svc"}
    first = await client.post("/v1/check", json=body, headers=admin)
    lease = first.json()["lease_id"]
    assert first.status_code == 200 and lease and first.json()["lease_ttl_s"] == 30.0
    second = await client.post("/v1/check", json=body, headers=admin)
    assert second.status_code == 429
    assert "already has 1 calls in flight" in second.json()["detail"]
    usage = await client.get(f"/admin/throttle/usage/{cid}?service=svc", headers=admin)
    assert usage.json()["limits"][0]["in_flight"] == 1
    resp = await client.post("/v1/release", json={**body, "lease_id": lease}, headers=admin)
    assert resp.status_code == 204
    assert (await client.post("/v1/check", json=body, headers=admin)).status_code == 200


async def test_who_may_check(client: httpx.AsyncClient, throttle_keys: KeyServer) -> None:
    """A client may check its own calls to services it may invoke; operators anyone's."""
    cid = unique("self")

    def as_client(*roles: str) -> dict[str, str]:
        token = throttle_keys.token(list(roles), client_id=cid, sub=cid)
        return {"Authorization": f"Bearer {token}"}

    own = {"client_id": cid, "service": "svc"}
    assert (
        await client.post("/v1/check", json=own, headers=as_client("invoker"))
    ).status_code == 200
    other = {"client_id": unique("else"), "service": "svc"}
    resp = await client.post("/v1/check", json=other, headers=as_client("invoker"))
    assert resp.status_code == 403 and "checking limits for client" in resp.json()["detail"]
    narrow = as_client("invoke:other")
    assert (await client.post("/v1/check", json=own, headers=narrow)).status_code == 403
    assert (
        await client.post("/v1/check", json=own, headers=as_client("invoke:svc"))
    ).status_code == 200
    operator = throttle_keys.headers("operator")
    assert (await client.post("/v1/check", json=other, headers=operator)).status_code == 200
    assert (await client.post("/v1/check", json=own)).status_code == 401


async def test_default_limit_applies_without_rules(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A client no policy or plan covers gets the configured default (here a burst of 3)."""
    body = {"client_id": unique("nobody"), "service": "svc"}
    statuses = [(await client.post("/v1/check", json=body, headers=admin)).status_code
                for _ in range(5)]  # fmt: skip
    assert statuses[:3] == [200] * 3 and 429 in statuses[3:]
    refused = await client.post("/v1/check", json=body, headers=admin)
    assert "rate limit 'client-rate'" in refused.json()["detail"]


async def test_redis_down_open_and_closed(
    tmp_path: Path, throttle_keys: KeyServer, admin: dict[str, str]
) -> None:
    """With Redis unreachable a check answers at once: locally (open) or 503 (closed)."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async for client in _app_client(tmp_path, throttle_keys, dead):
        # Rules cannot be published while Redis is away: the default (fail open) applies.
        body = {"client_id": "c", "service": "svc"}
        resp = await client.post("/v1/check", json=body, headers=admin)
        assert resp.status_code == 200 and resp.json()["mode"] == "local"
        await put(client, admin, "shut", service="svc", rate=10, burst=1, on_redis_down="closed")
        resp = await client.post("/v1/check", json=body, headers=admin)
        assert resp.status_code == 503 and "fails closed" in resp.json()["detail"]
        assert resp.headers["retry-after"] == "1"
        assert (await client.get("/readyz")).status_code == 503
