"""Plans, assignments, scope conflicts, warm-up and publication of the rules to Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text

from aimp_core.db import make_engine
from aimp_core.ratelimit.policies import Snapshot
from aimp_core.ratelimit.sync import CONFIG_KEY, VERSION_KEY
from aimp_throttle.app import create_app
from aimp_throttle.settings import ThrottleSettings
from aimp_throttle.store import PolicyStore

from .conftest import KeyServer

POLICIES = "/admin/throttle/policies"
PLANS = "/admin/throttle/plans"
CLIENTS = "/admin/throttle/clients"


@pytest.fixture
async def client(
    tmp_path: Path, throttle_keys: KeyServer, throttle_redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ThrottleSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 't.db'}",
        redis_url=throttle_redis_url,
        throttle_publish_interval_s=0.2,
    )
    app = create_app(settings, verifier=throttle_keys.verifier())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://throttle") as c:
            c.headers.update(throttle_keys.headers("admin"))
            yield c


def limits(**overrides: Any) -> dict[str, Any]:
    return {"rate": 10, "burst": 5, "on_redis_down": "open", **overrides}


def published(r: redis.Redis) -> Snapshot:
    raw = r.get(CONFIG_KEY)
    assert raw is not None
    return Snapshot.from_json(raw)


async def test_two_policies_may_not_claim_one_scope(client: httpx.AsyncClient) -> None:
    """A second policy for the same client and service is a 409 naming the first one."""
    body = limits(client_id="acme", service="classifier")
    assert (await client.put(f"{POLICIES}/first", json=body)).status_code == 201
    resp = await client.put(f"{POLICIES}/second", json=body)
    assert resp.status_code == 409
    assert resp.json()["detail"].startswith(
        "policy 'first' already limits client 'acme' on service 'classifier'"
    )
    # The same client on all services, or each client on that service, are other scopes.
    other = limits(client_id="acme")
    assert (await client.put(f"{POLICIES}/second", json=other)).status_code == 201
    each = limits(service="classifier", per_client=True)
    assert (await client.put(f"{POLICIES}/third", json=each)).status_code == 201
    shared = limits(service="classifier")
    assert (await client.put(f"{POLICIES}/fourth", json=shared)).status_code == 201
    # Replacing a policy keeps its own scope free for it.
    assert (await client.put(f"{POLICIES}/first", json=body)).status_code == 200


async def test_per_client_needs_all_clients(client: httpx.AsyncClient) -> None:
    """per_client with a client_id is refused, saying to drop one of them."""
    resp = await client.put(f"{POLICIES}/p", json=limits(client_id="acme", per_client=True))
    assert resp.status_code == 422
    assert "per_client applies only to policies without client_id" in resp.json()["detail"]


async def test_every_change_is_published_at_once(
    client: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    """After each PUT or DELETE returns, Redis holds the new rules and their version."""
    await client.put(f"{POLICIES}/pub-1", json=limits(client_id="acme", quota_month=500))
    snap = published(sync_redis)
    assert [p.policy_id for p in snap.policies] == ["pub-1"]
    assert snap.policies[0].limits.quota_month == 500
    assert sync_redis.get(VERSION_KEY) == snap.version.encode()
    await client.put(f"{PLANS}/gold", json=limits(rate=100, burst=20, quota_day=10_000))
    await client.put(f"{CLIENTS}/acme", json={"plan": "gold"})
    snap = published(sync_redis)
    assert snap.plans["gold"].limits.quota_day == 10_000 and snap.assignments == {"acme": "gold"}
    await client.delete(f"{POLICIES}/pub-1")
    assert published(sync_redis).policies == ()


async def test_lost_rules_are_republished_within_a_second(
    client: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    """When Redis loses the rules (a restart without persistence) they are back within 1 s."""
    await client.put(f"{POLICIES}/keep-me", json=limits(client_id="acme"))
    sync_redis.delete(CONFIG_KEY, VERSION_KEY)
    start = time.monotonic()
    while sync_redis.get(CONFIG_KEY) is None:
        assert time.monotonic() - start < 1.0, "the rules were not republished within 1 s"
        await asyncio.sleep(0.02)
    assert [p.policy_id for p in published(sync_redis).policies] == ["keep-me"]


async def test_plans_and_assignments(client: httpx.AsyncClient) -> None:
    """Plans are created, listed with their client counts, assigned, and protected while used."""
    resp = await client.put(f"{PLANS}/free", json=limits(quota_day=1000, description="trial"))
    assert resp.status_code == 201 and resp.headers["location"] == f"{PLANS}/free"
    assert resp.json()["clients"] == 0 and resp.json()["description"] == "trial"
    resp = await client.put(f"{CLIENTS}/acme", json={"plan": "free"})
    assert resp.status_code == 201 and resp.json() == {"client_id": "acme", "plan": "free"}
    assert (await client.put(f"{CLIENTS}/acme", json={"plan": "free"})).status_code == 200
    assert (await client.get(f"{PLANS}/free")).json()["clients"] == 1
    listed = (await client.get(PLANS)).json()["plans"]
    assert [(p["plan_id"], p["clients"], p["quota_day"]) for p in listed] == [("free", 1, 1000)]

    resp = await client.delete(f"{PLANS}/free")
    assert resp.status_code == 409 and "1 client(s) are on plan 'free'" in resp.json()["detail"]
    resp = await client.put(f"{CLIENTS}/acme", json={"plan": "nope"})
    assert resp.status_code == 400
    assert resp.json()["detail"] == (
        "plan 'nope' does not exist; create it first (PUT /admin/throttle/plans/nope)"
    )
    assert (await client.get(f"{CLIENTS}/acme")).json()["plan"] == "free"
    listed = (await client.get(CLIENTS)).json()
    assert listed == {"clients": [{"client_id": "acme", "plan": "free"}]}

    assert (await client.delete(f"{CLIENTS}/acme")).status_code == 204
    resp = await client.get(f"{CLIENTS}/acme")
    assert resp.status_code == 404 and "on no plan" in resp.json()["detail"]
    assert (await client.delete(f"{PLANS}/free")).status_code == 204
    assert (await client.get(f"{PLANS}/free")).status_code == 404


async def test_plan_writes_need_admin(client: httpx.AsyncClient, throttle_keys: KeyServer) -> None:
    """An operator may read plans and assignments but change neither."""
    operator = throttle_keys.headers("operator")
    assert (await client.get(PLANS, headers=operator)).status_code == 200
    resp = await client.put(f"{PLANS}/x", json=limits(), headers=operator)
    assert resp.status_code == 403
    resp = await client.put(f"{CLIENTS}/acme", json={"plan": "x"}, headers=operator)
    assert resp.status_code == 403


async def test_warmup_restarts_the_ramp(client: httpx.AsyncClient, sync_redis: redis.Redis) -> None:
    """POST .../warmup stamps the ramp start and publishes it; without warmup_s it is a 400."""
    await client.put(f"{POLICIES}/cold", json=limits(service="fresh", warmup_s=30))
    await client.put(f"{POLICIES}/plain", json=limits(service="other"))
    resp = await client.post(f"{POLICIES}/plain/warmup")
    assert resp.status_code == 400 and "has no warm-up ramp" in resp.json()["detail"]
    before = datetime.now(UTC)
    resp = await client.post(f"{POLICIES}/cold/warmup")
    assert resp.status_code == 200
    started = datetime.fromisoformat(resp.json()["warmup_started_at"])
    assert started >= before
    rule = next(p for p in published(sync_redis).policies if p.policy_id == "cold")
    assert rule.limits.warm_epoch_s == pytest.approx(started.timestamp())
    # Replacing the policy keeps the ramp start.
    resp = await client.put(f"{POLICIES}/cold", json=limits(service="fresh", warmup_s=60))
    assert datetime.fromisoformat(resp.json()["warmup_started_at"]) == started
    assert (await client.post(f"{POLICIES}/missing/warmup")).status_code == 404


def test_old_policy_table_gains_the_new_columns(tmp_path: Path) -> None:
    """A database from the first release (no month quota, no warm-up) is upgraded at start."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE throttle_policies (policy_id VARCHAR(64) PRIMARY KEY, "
                "client_id VARCHAR(128), service VARCHAR(63), rate FLOAT NOT NULL, "
                "burst INTEGER NOT NULL, quota_day BIGINT, concurrency INTEGER, "
                "on_redis_down VARCHAR(8) NOT NULL, created_at DATETIME NOT NULL, "
                "updated_at DATETIME NOT NULL)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO throttle_policies VALUES ('old', 'acme', NULL, 5.0, 10, 100, NULL, "
                "'closed', '2024-01-01 00:00:00', '2024-01-01 00:00:00')"
            )
        )
    store = PolicyStore(engine)
    store.create_schema()
    old = store.get("old")
    assert old is not None
    assert (old.per_client, old.limits.quota_month, old.limits.cold_factor) == (False, None, 3.0)
    assert old.limits.quota_day == 100 and old.limits.on_redis_down == "closed"
