"""GET /v1/usage over HTTP (ASGI), with a temp SQLite and a real key set (no Kafka)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import RSAKey

from aimp_core.events import RequestEvent
from aimp_core.net import free_port
from aimp_stats.app import create_app
from aimp_stats.settings import StatsSettings
from aimp_stats.store import EventStore

from .conftest import ISSUER, KeyServer

#: Two hours ago, 20 s into a minute: recent enough for raw calls (exact ranges).
BASE = int(time.time() // 60 * 60) - 7200 + 20


def within_1pct(body: dict[str, object], expected: dict[str, object]) -> bool:
    """Counts equal; latency fields within the sketch's 1 % of the exact values."""
    for name, want in expected.items():
        got = body[name]
        if name.endswith("_ms") and want is not None:
            assert isinstance(got, float) and isinstance(want, int | float)
            if abs(got - want) > 0.01 * want:
                return False
        elif got != want:
            return False
    return set(body) == set(expected)


def ev(
    event_id: str, status: int, ts: float, latency_ms: float, client: str = "app"
) -> RequestEvent:
    return RequestEvent(
        event_id=event_id,
        ts=ts,
        trace_id="t",
        request_id="r",
        client_id=client,
        service="svc",
        status=status,
        latency_ms=latency_ms,
        upstream_ms=0,
        bytes_in=0,
        bytes_out=0,
        outcome="ok",
    )


@pytest.fixture
async def app(tmp_path: Path, stats_keys: KeyServer) -> AsyncIterator[FastAPI]:
    settings = StatsSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 's.db'}",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",  # nothing listens there
    )
    application = create_app(settings, verifier=stats_keys.verifier(), consume=False)
    async with application.router.lifespan_context(application):
        store: EventStore = application.state.store
        store.insert_events(
            [
                ev("1", 200, BASE, 5),
                ev("2", 502, BASE + 100, 50),
                ev("3", 429, BASE + 200, 1, client="greedy"),
                ev("4", 200, BASE + 300, 7),
            ]
        )
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stats") as c:
        yield c


async def test_usage_for_an_operator(client: httpx.AsyncClient, stats_keys: KeyServer) -> None:
    """An operator gets exact counts and nearest-rank percentiles within 1 %."""
    resp = await client.get("/v1/usage", headers=stats_keys.headers("operator"))
    assert resp.status_code == 200, resp.text
    expected = {"requests": 4, "errors": 1, "throttled": 1, "p50_ms": 5, "p99_ms": 50}
    assert within_1pct(resp.json(), expected), resp.json()


async def test_usage_filters_by_client_and_time(
    client: httpx.AsyncClient, stats_keys: KeyServer
) -> None:
    """client_id, ISO since and unix until all narrow the answer."""
    h = stats_keys.headers("admin")
    resp = await client.get("/v1/usage", params={"client_id": "greedy"}, headers=h)
    assert resp.json()["requests"] == 1 and resp.json()["throttled"] == 1
    since_iso = datetime.fromtimestamp(BASE + 100, UTC).isoformat().replace("+00:00", "Z")
    params = {"since": since_iso, "until": str(BASE + 300)}
    resp = await client.get("/v1/usage", params=params, headers=h)
    expected = {"requests": 2, "errors": 1, "throttled": 1, "p50_ms": 1, "p99_ms": 50}
    assert within_1pct(resp.json(), expected), resp.json()
    resp = await client.get("/v1/usage", params={"service": "none"}, headers=h)
    assert resp.json() == {
        "requests": 0,
        "errors": 0,
        "throttled": 0,
        "p50_ms": None,
        "p99_ms": None,
    }


async def test_bad_time_is_a_400_naming_the_parameter(
    client: httpx.AsyncClient, stats_keys: KeyServer
) -> None:
    """A since that is neither unix seconds nor ISO-8601 gets a problem naming 'since'."""
    resp = await client.get(
        "/v1/usage", params={"since": "last tuesday"}, headers=stats_keys.headers("admin")
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["detail"].startswith("since must be unix seconds")


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    """Without a token the answer is 401 with a Bearer challenge."""
    resp = await client.get("/v1/usage")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_invoker_is_403(client: httpx.AsyncClient, stats_keys: KeyServer) -> None:
    """A business app's invoker token may not read usage."""
    resp = await client.get("/v1/usage", headers=stats_keys.headers("invoker"))
    assert resp.status_code == 403
    assert "reading usage" in resp.json()["detail"]


async def test_token_signed_by_another_key_is_401(
    client: httpx.AsyncClient, stats_keys: KeyServer
) -> None:
    """A well-formed admin token from a key outside the JWKS is rejected."""
    rogue = RSAKey.generate_key(2048, parameters={"kid": stats_keys.key.kid}, private=True)
    claims = jwt.decode(stats_keys.token(["admin"]), stats_keys.key).claims
    token = jwt.encode({"alg": "RS256", "kid": rogue.kid}, claims, rogue)
    resp = await client.get("/v1/usage", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert ISSUER not in resp.text  # the detail names the problem, not token contents


async def test_readyz_names_unreachable_kafka(client: httpx.AsyncClient) -> None:
    """With SQL up and no broker at the configured address, readyz is 503 naming kafka."""
    resp = await client.get("/readyz")
    assert resp.status_code == 503
    assert "kafka is not reachable" in resp.json()["detail"]
    assert "sql" not in resp.json()["detail"]
