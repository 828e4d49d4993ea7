"""Backflow end to end on real parts: Redis carries the rate, Tansu the samples, SQLite the
settings, files the records; the gateway's sampler is the real module."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from aimp_core.kafka import EventPublisher
from aimp_gateway.backflow import BackflowSampler
from aimp_gateway.upstream import UpstreamResponse
from aimp_stats.app import create_app
from aimp_stats.backflow_app import Backflow
from aimp_stats.settings import StatsSettings

from .conftest import KeyServer

pytestmark = pytest.mark.integration

CALLS = 5_000
JSON_HEADERS = ((b"Content-Type", b"application/json"),)


def settings_for(tmp_path: Path, kafka_bootstrap: str, redis_url: str) -> StatsSettings:
    return StatsSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'stats.db'}",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        requests_topic=f"aimp.requests.v1.test-{uuid.uuid4().hex[:8]}",
        backflow_consumer_group=f"backflow-{uuid.uuid4().hex[:8]}",
        alarm_evaluator_enabled=False,
    )


@pytest.fixture
async def stats(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, stats_keys: KeyServer
) -> AsyncIterator[FastAPI]:
    """The stats app with its consumers (the backflow sink among them) running."""
    app = create_app(
        settings_for(tmp_path, kafka_bootstrap, redis_url), verifier=stats_keys.verifier()
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def stats_api(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, stats_keys: KeyServer
) -> AsyncIterator[FastAPI]:
    """The stats app without consumers: its HTTP API only."""
    settings = settings_for(tmp_path, kafka_bootstrap, redis_url)
    app = create_app(settings, verifier=stats_keys.verifier(), consume=False)
    async with app.router.lifespan_context(app):
        yield app


def call_scope(request_id: str) -> dict[str, Any]:
    return {
        "state": {"request_id": request_id},
        "headers": [(b"content-type", b"application/json")],
    }


async def test_ten_percent_sampling_keeps_ten_percent_redacted(
    stats: FastAPI, stats_keys: KeyServer, kafka_bootstrap: str, redis_url: str
) -> None:
    """At 10 %, 5,000 calls keep 10 % +- 1 % in the files, with the redacted fields removed."""
    service = f"bf-{uuid.uuid4().hex[:8]}"
    backflow: Backflow = stats.state.backflow
    publisher = EventPublisher(kafka_bootstrap)
    await publisher.start()
    sampler = BackflowSampler(Redis.from_url(redis_url), publisher, max_body_bytes=4096, poll_s=1.0)
    await sampler.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=stats), base_url="http://stats")
    try:
        # A live change: the running sampler applies it within 1 s.
        resp = await client.put(
            f"/v1/backflow/rates/{service}",
            json={"rate_percent": 10, "redact_fields": ["request.body.user.email", "client_id"]},
            headers=stats_keys.headers("operator"),
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["applied"] is True
        changed = time.monotonic()
        while sampler.rates.get(service) != 10:
            assert time.monotonic() - changed < 1.0, "the gateway did not apply the rate in 1 s"
            await asyncio.sleep(0.01)

        sampled = []
        for i in range(CALLS):
            request_id = f"{service}-call-{i}"
            body = json.dumps({"user": {"email": f"u{i}@example.com", "id": i}, "x": [i]})
            ok = sampler.offer(
                call_scope(request_id),
                ts=time.time(),
                service=service,
                client_id="demo-app",
                instance=None,
                request_body=body.encode(),
                response=UpstreamResponse(200, JSON_HEADERS, b'{"y": [1]}', 1.0),
            )
            if ok:
                sampled.append(request_id)
        assert 0.09 * CALLS <= len(sampled) <= 0.11 * CALLS, len(sampled)

        deadline = time.monotonic() + 30
        while backflow.sink.written < len(sampled):
            assert time.monotonic() < deadline, f"sink wrote {backflow.sink.written}"
            await asyncio.sleep(0.1)

        resp = await client.get(
            "/v1/backflow/export",
            params={"service": service, "since": str(time.time() - 600)},
            headers=stats_keys.headers("operator"),
        )
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/gzip"
        records = [json.loads(x) for x in gzip.decompress(resp.content).splitlines()]
        assert sorted(r["request_id"] for r in records) == sorted(sampled)
        for r in records:
            assert "email" not in r["request"]["body"]["user"]
            assert "client_id" not in r
            assert r["request"]["body"]["user"]["id"] == int(r["request_id"].rsplit("-", 1)[1])
            assert r["response"] == {
                "content_type": "application/json",
                "encoding": "json",
                "size": 10,
                "body": {"y": [1]},
            }
        day = time.strftime("%Y-%m-%d", time.gmtime())
        assert list((backflow.root / service / day).glob("part-*.jsonl.gz"))

        # Rate 0 stops sampling at once (and the rates list says so).
        resp = await client.put(
            f"/v1/backflow/rates/{service}",
            json={"rate_percent": 0},
            headers=stats_keys.headers("admin"),
        )
        assert resp.json()["redact_fields"] == ["request.body.user.email", "client_id"]
        changed = time.monotonic()
        while service in sampler.rates:
            assert time.monotonic() - changed < 1.0
            await asyncio.sleep(0.01)
    finally:
        await client.aclose()
        await sampler.stop()
        await publisher.stop()


async def test_rate_api_checks_roles_and_input(stats_api: FastAPI, stats_keys: KeyServer) -> None:
    """Only operators and admins change rates; bad rates, paths and names are 4xx."""
    transport = httpx.ASGITransport(app=stats_api)
    async with httpx.AsyncClient(transport=transport, base_url="http://stats") as client:
        url = "/v1/backflow/rates/iris"
        invoker = await client.put(
            url, json={"rate_percent": 5}, headers=stats_keys.headers("invoker")
        )
        assert invoker.status_code == 403
        op = stats_keys.headers("operator")
        assert (await client.put(url, json={"rate_percent": 101}, headers=op)).status_code == 422
        bad_path = await client.put(
            url, json={"rate_percent": 1, "redact_fields": ["a..b"]}, headers=op
        )
        assert bad_path.status_code == 422 and "dot-separated" in bad_path.text
        bad_name = await client.put("/v1/backflow/rates/..", json={"rate_percent": 1}, headers=op)
        assert bad_name.status_code in (400, 404)
        assert (await client.get(url, headers=op)).status_code == 404
        assert (await client.put(url, json={"rate_percent": 2.5}, headers=op)).status_code == 200
        listed = (await client.get("/v1/backflow/rates", headers=op)).json()["services"]
        assert [(s["service"], s["rate_percent"]) for s in listed] == [("iris", 2.5)]
        assert (await client.delete(url, headers=op)).status_code == 204
        assert (await client.get(url, headers=op)).status_code == 404
        export = await client.get(
            "/v1/backflow/export", params={"service": "iris", "since": "x"}, headers=op
        )
        assert export.status_code == 400 and "since" in export.json()["detail"]
