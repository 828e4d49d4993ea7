"""The alarm rule and history API over HTTP (ASGI) with a temp SQLite and a real key set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from aimp_core.net import free_port
from aimp_stats.alarm_app import Alarms
from aimp_stats.alarm_domain import AlertState, Phase
from aimp_stats.app import create_app
from aimp_stats.settings import StatsSettings

from .conftest import KeyServer

RULE = {
    "name": "slow iris",
    "metric": "p99_ms",
    "service": "iris*",
    "threshold": 250,
    "hold_minutes": 2.5,
    "webhook_url": "https://hooks.example.com/services/T000/B000/SECRET-TOKEN",
}


@pytest.fixture
async def client(
    tmp_path: Path, redis_url: str, stats_keys: KeyServer
) -> AsyncIterator[httpx.AsyncClient]:
    settings = StatsSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 's.db'}",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        redis_url=redis_url,
    )
    app: FastAPI = create_app(settings, verifier=stats_keys.verifier(), consume=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stats") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


async def test_rule_crud_for_operators(client: httpx.AsyncClient, stats_keys: KeyServer) -> None:
    """Operators create, read, change and delete rules; the webhook's token is never shown."""
    op = stats_keys.headers("operator")
    created = await client.post("/v1/alarms/rules", json=RULE, headers=op)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["comparison"] == ">" and body["window_s"] == 60 and body["enabled"] is True
    assert body["webhook"] == "https://hooks.example.com/…"
    assert "SECRET" not in created.text
    rule_id = body["id"]
    changed = await client.patch(
        f"/v1/alarms/rules/{rule_id}", json={"threshold": 500, "enabled": False}, headers=op
    )
    assert changed.status_code == 200
    assert (changed.json()["threshold"], changed.json()["enabled"], changed.json()["name"]) == (
        500,
        False,
        "slow iris",
    )
    listed = (await client.get("/v1/alarms/rules", headers=op)).json()["rules"]
    assert [r["id"] for r in listed] == [rule_id]
    assert (await client.delete(f"/v1/alarms/rules/{rule_id}", headers=op)).status_code == 204
    assert (await client.get(f"/v1/alarms/rules/{rule_id}", headers=op)).status_code == 404


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"metric": "cpu"}, "metric"),
        ({"hold_minutes": -1}, "hold_minutes"),
        ({"comparison": "=="}, "comparison"),
        ({"service": "../x"}, "shell pattern"),
        ({"webhook_url": "ftp://x"}, "webhook_url"),
        ({"threshold": "nan"}, "finite"),
    ],
)
async def test_invalid_rules_are_422_naming_the_field(
    client: httpx.AsyncClient, stats_keys: KeyServer, change: dict[str, object], needle: str
) -> None:
    """A rule with a bad field is refused with a detail naming that field."""
    resp = await client.post(
        "/v1/alarms/rules", json={**RULE, **change}, headers=stats_keys.headers("admin")
    )
    assert resp.status_code == 422 and needle in resp.json()["detail"]


async def test_invalid_patch_is_400(client: httpx.AsyncClient, stats_keys: KeyServer) -> None:
    """A PATCH that would make the rule invalid changes nothing and says why."""
    op = stats_keys.headers("operator")
    rule_id = (await client.post("/v1/alarms/rules", json=RULE, headers=op)).json()["id"]
    resp = await client.patch(f"/v1/alarms/rules/{rule_id}", json={"window_s": 0}, headers=op)
    assert resp.status_code == 400 and "window_s" in resp.json()["detail"]
    assert (await client.get(f"/v1/alarms/rules/{rule_id}", headers=op)).json()["window_s"] == 60


async def test_roles(client: httpx.AsyncClient, stats_keys: KeyServer) -> None:
    """Invokers may not read alarms; only operators and admins may change rules."""
    inv = stats_keys.headers("invoker")
    assert (await client.get("/v1/alarms/rules", headers=inv)).status_code == 403
    assert (await client.get("/v1/alarms/history", headers=inv)).status_code == 403
    assert (await client.post("/v1/alarms/rules", json=RULE, headers=inv)).status_code == 403
    assert (await client.get("/v1/alarms/history")).status_code == 401


async def test_history_filters_and_active_alerts(
    client: httpx.AsyncClient, stats_keys: KeyServer
) -> None:
    """History is newest first and filters by service, rule and time; active lists firing."""
    op = stats_keys.headers("operator")
    rule_id = (await client.post("/v1/alarms/rules", json=RULE, headers=op)).json()["id"]
    alarms: Alarms = client.app.state.alarms  # type: ignore[attr-defined]

    def event(event_id: str, ts: float, state: str, service: str) -> dict[str, object]:
        return {
            "event_id": event_id,
            "ts": ts,
            "state": state,
            "rule_id": rule_id,
            "rule_name": "slow iris",
            "metric": "p99_ms",
            "service": service,
            "pod": "",
            "value": 300.0,
            "comparison": ">",
            "threshold": 250.0,
            "hold_minutes": 2.5,
            "active_since": ts - 150,
        }

    alarms.store.save(
        {(rule_id, "iris"): AlertState(Phase.FIRING, 1_700_000_300.0, 300.0)},
        [
            event("a", 1_700_000_000.0, "firing", "iris"),
            event("b", 1_700_000_100.0, "resolved", "iris"),
            event("c", 1_700_000_300.0, "firing", "iris"),
            event("d", 1_700_000_200.0, "firing", "iris-cpp"),
        ],
    )
    h = await client.get("/v1/alarms/history", params={"service": "iris"}, headers=op)
    assert [e["event_id"] for e in h.json()["events"]] == ["c", "b", "a"]
    params = {"since": "2023-11-14T22:15:00Z", "until": "1700000300", "rule_id": str(rule_id)}
    h = await client.get("/v1/alarms/history", params=params, headers=op)
    assert [e["event_id"] for e in h.json()["events"]] == ["d", "b"]
    h = await client.get("/v1/alarms/history", params={"limit": 1}, headers=op)
    assert [e["event_id"] for e in h.json()["events"]] == ["c"]
    active = (await client.get("/v1/alarms/active", headers=op)).json()["alerts"]
    assert [(a["subject"], a["phase"], a["value"]) for a in active] == [("iris", "firing", 300.0)]
