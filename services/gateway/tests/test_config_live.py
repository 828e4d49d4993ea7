"""The config center live: two gateways sharing real Redis and one SQL database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from aimp_core.db import make_engine
from aimp_core.net import free_port
from aimp_gateway.asgi import GatewayApp
from aimp_gateway.config_schemas import ConfigDocument, ServiceConfigWrite
from aimp_gateway.config_store import Change, ConfigStore
from aimp_gateway.config_sync import VERSION_KEY, ConfigFollower
from aimp_gateway.policy import LiveConfig, RevisionWeight
from aimp_gateway.settings import GatewaySettings
from aimp_gateway.throttle import make_redis

from .conftest import OipUpstream, register
from .gateways import (
    Backends,
    admin_token,
    audit_events,
    client_token,
    new_home,
    start_gateways,
    wait_until,
)

#: client id -> roles of the clients these gateways know.
CLIENTS = {
    "live-invoker": ["invoker"],
    "live-config": ["admin:config"],
    "live-auditor": ["auditor"],
}


@dataclass
class Node:
    app: GatewayApp
    url: str

    @property
    def live(self) -> LiveConfig:
        live: LiveConfig = self.app.plane.config
        return live


@dataclass
class Pair:
    a: Node
    b: Node
    service: str
    upstream: OipUpstream
    secrets: dict[str, str]
    sql_url: str
    redis_url: str
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, client_id: str | None = None) -> dict[str, str]:
        """Bearer headers for ``client_id`` (the admin user when None), fetched once."""
        key = client_id or "admin"
        if key not in self.tokens:
            self.tokens[key] = self._token(client_id)
        return {"Authorization": f"Bearer {self.tokens[key]}"}

    def _token(self, client_id: str | None) -> str:
        if client_id is None:
            return admin_token(self.a.url)
        return client_token(self.a.url, client_id, self.secrets[client_id])

    def head(self) -> int:
        return ConfigStore(make_engine(self.sql_url)).head()


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, backends: Backends, oip_upstream: OipUpstream
) -> Iterator[Pair]:
    """Two gateway processes' worth of app (one home, so one SQL database) on one Redis."""
    home, secrets, creds = new_home(tmp_path_factory, "live-config", CLIENTS)
    service = f"live-{uuid.uuid4().hex[:6]}"
    register(backends.registry_url, service.upper(), oip_upstream.port)
    issuer = "http://gateway.live.test"  # shared, so either gateway accepts the other's tokens
    a, b = start_gateways(backends, home, creds, issuer=issuer)
    yield Pair(
        Node(a.app, a.url), Node(b.app, b.url), service, oip_upstream, secrets,
        GatewaySettings(home=home).sql_url("gateway"), backends.redis_url,
    )  # fmt: skip
    for gateway in (a, b):
        gateway.server.stop()


def _applied(node: Node, version: int) -> bool:
    return node.live.snapshot.version >= version


def _canary(percent: int) -> dict[str, Any]:
    return {
        "revisions": [
            {"revision": "stable", "weight": 100 - percent},
            {"revision": "canary", "weight": percent},
        ]
    }


def test_weight_change_applies_in_the_other_gateway_within_a_second(pair: Pair) -> None:
    """A canary weight PUT on gateway A is in gateway B's live snapshot within 1 s."""
    url = f"{pair.a.url}/admin/config/services/{pair.service}"
    resp = httpx.put(url, json=_canary(10), headers=pair.auth("live-config"))
    assert resp.status_code in (200, 201), resp.text
    version = int(resp.headers["ETag"].strip('"'))
    assert resp.json()["version"] == version
    assert pair.a.live.snapshot.version >= version  # applied where it was written at once
    took = wait_until(lambda: pair.b.live.snapshot.version >= version, timeout_s=1.0)
    policy = pair.b.live.snapshot.policy(pair.service)
    assert policy.revisions == (RevisionWeight("stable", 90), RevisionWeight("canary", 10))
    assert took < 1.0


def test_a_stale_number_in_redis_does_not_hide_the_same_number_announced_now(
    pair: Pair,
) -> None:
    """A version number left in Redis by an earlier database (reset, another cluster) does
    not hide the announcement of that same number now: B still applies it within 1 s."""
    coming = pair.head() + 1
    redis = Redis.from_url(pair.redis_url)
    redis.set(VERSION_KEY, coming)  # left over: SQL has no such version yet
    redis.close()
    time.sleep(1.2)  # both followers have polled the stale number and found nothing newer
    url = f"{pair.a.url}/admin/config/services/{pair.service}"
    resp = httpx.put(url, json=_canary(15), headers=pair.auth("live-config"))
    assert resp.status_code in (200, 201), resp.text
    assert int(resp.headers["ETag"].strip('"')) == coming
    wait_until(lambda: pair.b.live.snapshot.version >= coming, timeout_s=1.0)


def test_a_missed_message_still_applies_through_the_version_check(pair: Pair) -> None:
    """A version stored and announced only in the key (no pub/sub message) applies in both."""
    store = ConfigStore(make_engine(pair.sql_url))

    def add(doc: dict[str, Any]) -> dict[str, Any]:
        document = ConfigDocument.model_validate(doc)
        document.services[f"{pair.service}-quiet"] = ServiceConfigWrite(max_concurrent=7)
        return document.dump()

    _, after = store.change(Change("test", "config.service.put", "config/services/x"), add)
    redis = Redis.from_url(pair.redis_url)
    redis.set(VERSION_KEY, after.version)  # no PUBLISH: as if the message were lost
    redis.close()
    for node in (pair.a, pair.b):
        wait_until(partial(_applied, node, after.version), timeout_s=2.0)
        assert node.live.snapshot.policy(f"{pair.service}-quiet").max_concurrent == 7


def test_stale_if_match_is_refused_with_412(pair: Pair) -> None:
    """A write based on an old version answers 412 with the newest version and stores nothing."""
    headers = pair.auth("live-config")
    current = httpx.get(f"{pair.a.url}/admin/config", headers=headers)
    etag = current.headers["ETag"]
    url = f"{pair.a.url}/admin/config/services/{pair.service}"
    moved = httpx.put(url, json=_canary(20), headers={**headers, "If-Match": etag})
    assert moved.status_code == 200, moved.text
    stale = httpx.put(url, json=_canary(30), headers={**headers, "If-Match": etag})
    assert stale.status_code == 412
    newest = moved.headers["ETag"].strip('"')
    assert f"If-Match: {newest}" in stale.json()["detail"]
    assert pair.head() == int(moved.headers["ETag"].strip('"'))


def test_invalid_config_is_refused_with_a_clear_message_and_nothing_stored(pair: Pair) -> None:
    """All-zero weights and a route over /admin are 422s that say why; no version is added."""
    headers = pair.auth("live-config")
    before = pair.head()
    zero = {"revisions": [{"revision": "a", "weight": 0}]}
    resp = httpx.put(
        f"{pair.a.url}/admin/config/services/{pair.service}", json=zero, headers=headers
    )
    assert resp.status_code == 422
    assert "every revision weight is 0" in resp.json()["detail"]
    resp = httpx.put(
        f"{pair.a.url}/admin/config/routes/bad",
        json={"path_prefix": "/admin/x", "service": pair.service},
        headers=headers,
    )
    assert resp.status_code == 422
    assert "overlaps '/admin'" in resp.json()["detail"]
    assert pair.head() == before


def test_roles_decide_who_reads_and_who_writes(pair: Pair) -> None:
    """auditor reads but may not write; invoker may not even read; admin:config writes."""
    url = f"{pair.a.url}/admin/config/services/{pair.service}-roles"
    assert httpx.get(f"{pair.a.url}/admin/config", headers=pair.auth("live-auditor")).is_success
    assert httpx.put(url, json={}, headers=pair.auth("live-auditor")).status_code == 403
    assert (
        httpx.get(f"{pair.a.url}/admin/config", headers=pair.auth("live-invoker")).status_code
        == 403
    )
    assert httpx.get(f"{pair.a.url}/admin/config").status_code == 401
    assert httpx.put(url, json={}, headers=pair.auth("live-config")).status_code == 201


def test_rollback_makes_a_new_version_equal_to_an_old_one(pair: Pair) -> None:
    """Rolling back to version N stores N+k equal to N, applied in the other gateway."""
    headers = pair.auth()
    url = f"{pair.a.url}/admin/config/services/{pair.service}"
    first = httpx.put(url, json=_canary(5), headers=headers)
    httpx.put(url, json=_canary(50), headers=headers).raise_for_status()
    old = int(first.headers["ETag"].strip('"'))
    resp = httpx.post(
        f"{pair.a.url}/admin/config/rollback",
        json={"version": old, "comment": "canary too slow"},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    new = resp.json()["version"]
    assert new > old + 1
    wait_until(lambda: pair.b.live.snapshot.version >= new, timeout_s=1.0)
    assert pair.b.live.snapshot.policy(pair.service).revisions[1] == RevisionWeight("canary", 5)
    history = httpx.get(f"{pair.a.url}/admin/config/history?limit=3", headers=headers).json()
    assert history[0]["version"] == new
    assert history[0]["action"] == "config.rollback"
    assert history[0]["comment"] == "canary too slow"
    assert history[0]["author"] == "admin"
    stored = httpx.get(f"{pair.a.url}/admin/config/history/{new}", headers=headers).json()
    old_doc = httpx.get(f"{pair.a.url}/admin/config/history/{old}", headers=headers).json()
    assert stored["document"] == old_doc["document"]
    missing = httpx.post(
        f"{pair.a.url}/admin/config/rollback", json={"version": 10_000}, headers=headers
    )
    assert missing.status_code == 404


def test_a_routed_path_reaches_the_upstream_rewritten(pair: Pair) -> None:
    """A route written on A sends B's /<prefix>/... calls to the service, rewritten, with auth."""
    prefix = f"/{pair.service}-shop"
    route = {"path_prefix": prefix, "service": pair.service, "rewrite_prefix": "/echo/v1"}
    resp = httpx.put(
        f"{pair.a.url}/admin/config/routes/{pair.service}-shop",
        json=route,
        headers=pair.auth("live-config"),
    )
    assert resp.status_code == 201, resp.text
    version = resp.json()["version"]
    wait_until(lambda: pair.b.live.snapshot.version >= version, timeout_s=1.0)
    invoker = pair.auth("live-invoker")
    call = httpx.get(f"{pair.b.url}{prefix}/items/a%2Fb?x=1", headers=invoker)
    assert call.status_code == 200, call.text
    assert call.json()["raw_path"] == "/echo/v1/items/a%2Fb?x=1"
    assert "x-request-id" in call.headers
    assert httpx.get(f"{pair.b.url}{prefix}/items").status_code == 401
    gone = httpx.delete(
        f"{pair.a.url}/admin/config/routes/{pair.service}-shop", headers=pair.auth()
    )
    assert gone.status_code == 204
    deleted = int(gone.headers["ETag"].strip('"'))
    wait_until(lambda: pair.b.live.snapshot.version >= deleted, timeout_s=1.0)
    assert httpx.get(f"{pair.b.url}{prefix}/items", headers=invoker).status_code == 404


def test_every_change_is_audited(pair: Pair, kafka_bootstrap: str) -> None:
    """A config write becomes an audit event naming actor, action, target, before and after."""
    name = f"{pair.service}-audited"
    resp = httpx.put(
        f"{pair.a.url}/admin/config/services/{name}",
        json={"max_concurrent": 3},
        headers=pair.auth("live-config"),
    )
    assert resp.status_code == 201
    events = asyncio.run(audit_events(kafka_bootstrap, f"config/services/{name}"))
    assert len(events) == 1
    (event,) = events
    assert event["actor"] == "live-config"
    assert event["action"] == "config.service.put"
    assert event["before"] is None
    assert event["after"]["max_concurrent"] == 3
    assert event["request_id"] == resp.headers["x-request-id"]


async def test_redis_down_keeps_the_snapshot_and_follows_sql(tmp_path: Path) -> None:
    """With Redis unreachable, the follower keeps its version and picks changes up from SQL."""
    store = ConfigStore(make_engine(f"sqlite:///{tmp_path / 'gateway.db'}"))
    store.create_tables()
    live = LiveConfig()
    redis = make_redis(f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=0.1)
    follower = ConfigFollower(redis, store, live, poll_s=0.05, sql_poll_s=0.05)
    await follower.start()
    try:
        assert live.snapshot.version == 0

        def add(doc: dict[str, Any]) -> dict[str, Any]:
            document = ConfigDocument.model_validate(doc)
            document.services["offline"] = ServiceConfigWrite(timeout_s=3)
            return document.dump()

        await asyncio.to_thread(store.change, Change("t", "config.service.put", "x"), add)
        for _ in range(250):  # 5 s at most
            if live.snapshot.version >= 1:
                break
            await asyncio.sleep(0.02)
        assert live.snapshot.version == 1
        assert live.snapshot.policy("offline").timeout_s == 3
    finally:
        await follower.stop()
        await redis.aclose()
