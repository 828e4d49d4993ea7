"""Data backflow in the gateway: the sampling decision, the payload encoding, and sampled
calls through a real gateway (real Redis, registry, Tansu and upstream) onto Kafka."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis

from aimp_core.events import TOPIC_BACKFLOW
from aimp_gateway.backflow import (
    CHANNEL,
    RATES_KEY,
    VERSION_KEY,
    is_sampled,
    parse_rates,
    payload,
)

from .conftest import OipUpstream, register
from .gateways import Backends, client_token, start_gateway, write_credentials_file

ids = st.text(min_size=1, max_size=40)
rates = st.floats(min_value=0, max_value=100)


@given(request_id=ids, low=rates, high=rates)
def test_sampling_is_deterministic_and_monotonic_in_the_rate(
    request_id: str, low: float, high: float
) -> None:
    """A call sampled at some rate is sampled at every higher rate, and always the same way."""
    low, high = sorted((low, high))
    if is_sampled(request_id, low):
        assert is_sampled(request_id, high)
    assert is_sampled(request_id, low) == is_sampled(request_id, low)
    assert not is_sampled(request_id, 0) and is_sampled(request_id, 100)


@pytest.mark.parametrize("rate", [1.0, 10.0, 50.0])
def test_sampled_share_converges_on_the_rate(rate: float) -> None:
    """Over 50,000 request ids the sampled share is the rate within 1 point (the issue's
    10 % +- 1 %); ids are seeded, so the check is the same on every run (1 point is over
    4 standard deviations even at 50 %)."""
    n = 50_000
    rng = random.Random(rate)
    kept = sum(is_sampled(f"{rng.getrandbits(128):032x}", rate) for _ in range(n))
    assert abs(100 * kept / n - rate) < 1.0


def test_payload_encodings() -> None:
    """JSON bodies are decoded, others base64'd, empty or too large ones left out."""
    assert payload(b'{"a": 1}', "application/json; charset=utf-8", 100)["body"] == {"a": 1}
    assert payload(b'{"a": 1}', "application/vnd.x+json", 100)["encoding"] == "json"
    raw = payload(b"\x00\x01", "application/octet-stream", 100)
    assert (raw["encoding"], raw["body"], raw["size"]) == ("base64", "AAE=", 2)
    broken = payload(b"{not json", "application/json", 100)
    assert broken["encoding"] == "base64"
    big = payload(b"x" * 101, "text/plain", 100)
    assert (big["encoding"], big["body"], big["skipped"], big["size"]) == (
        "none",
        None,
        "too_large",
        101,
    )
    assert payload(b"", "", 100) == {
        "content_type": "",
        "size": 0,
        "encoding": "none",
        "body": None,
    }


def test_parse_rates_drops_nonsense() -> None:
    """Only rates in (0, 100] survive."""
    raw = {b"a": b"10", b"b": b"0", b"c": b"x", b"d": b"100", b"e": b"250"}
    assert parse_rates(raw) == {"a": 10.0, "d": 100.0}


# -- through a real gateway ------------------------------------------------------------


class Gw:
    def __init__(self, url: str, model: str, token: str) -> None:
        self.url, self.model, self.token = url, model, token


@pytest.fixture(scope="module")
def backflow_gateway(
    tmp_path_factory: pytest.TempPathFactory, backends: Backends, oip_upstream: OipUpstream
) -> Iterator[Gw]:
    """A gateway of its own (no low rate limit) with a small backflow body cap."""
    home: Path = tmp_path_factory.mktemp("backflow-gw")
    secret = uuid.uuid4().hex
    creds = write_credentials_file(home, {"bf-app": ["invoker"]}, {"bf-app": secret})
    model = f"bf-{uuid.uuid4().hex[:6]}"
    register(backends.registry_url, model.upper(), oip_upstream.port)
    started = start_gateway(backends, home, creds, gateway_backflow_max_body_bytes=2048)
    yield Gw(started.url, model, client_token(started.url, "bf-app", secret))
    started.server.stop()


def set_rate(redis_url: str, service: str, rate: float) -> None:
    """Write a rate the way the stats service does (hash, version, announcement)."""
    redis = Redis.from_url(redis_url)
    with redis.pipeline(transaction=True) as pipe:
        pipe.hset(RATES_KEY, service, repr(rate))
        pipe.incr(VERSION_KEY)
        version = pipe.execute()[-1]
    redis.publish(CHANNEL, str(version))
    redis.close()


async def sampled_records(bootstrap: str, service: str, count: int) -> list[dict[str, Any]]:
    """Records of ``service`` on the backflow topic, read from the start until ``count``
    arrived (then half a second more, to see any extra)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 15
        partitions = consumer.partitions_for_topic(TOPIC_BACKFLOW)
        while not partitions and time.monotonic() < deadline:
            await consumer.topics()
            await asyncio.sleep(0.2)
            partitions = consumer.partitions_for_topic(TOPIC_BACKFLOW)
        assert partitions, "the backflow topic never appeared"
        tps = [TopicPartition(TOPIC_BACKFLOW, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        extra_until = None
        while time.monotonic() < deadline and (
            extra_until is None or time.monotonic() < extra_until
        ):
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found += [json.loads(r.value) for r in records if r.key == service.encode()]
            if len(found) >= count and extra_until is None:
                extra_until = time.monotonic() + 0.5
    finally:
        await consumer.stop()
    return found


async def test_sampled_calls_through_the_gateway(
    backflow_gateway: Gw, redis_url: str, kafka_bootstrap: str
) -> None:
    """At 50 % exactly the calls whose request id hashes under the rate reach the topic,
    with decoded request and response bodies; a body over the cap is left out."""
    gw = backflow_gateway
    set_rate(redis_url, gw.model, 50)
    await asyncio.sleep(1.2)  # the gateway applies a change within 1 s
    headers = {"Authorization": f"Bearer {gw.token}"}
    request_ids = [f"bf-call-{i}-{uuid.uuid4().hex[:6]}" for i in range(40)]
    async with httpx.AsyncClient() as http:
        for i, rid in enumerate(request_ids):
            infer = {
                "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 1], "data": [i]}]
            }
            resp = await http.post(
                f"{gw.url}/v2/models/{gw.model}/infer",
                json=infer,
                headers={**headers, "x-request-id": rid},
            )
            assert resp.status_code == 200
        big_id = f"bf-big-{uuid.uuid4().hex[:6]}"
        set_rate(redis_url, gw.model, 100)
        await asyncio.sleep(1.2)
        big = {
            "inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [1, 600], "data": [1.0] * 600}
            ]
        }
        resp = await http.post(
            f"{gw.url}/v2/models/{gw.model}/infer",
            json=big,
            headers={**headers, "x-request-id": big_id},
        )
        assert resp.status_code == 200
        big_sizes = (len(resp.request.content), len(resp.content))
    expected = {rid for rid in request_ids if is_sampled(rid, 50)}
    assert 8 <= len(expected) <= 32  # the hash splits these ids, not all one way
    records = await sampled_records(kafka_bootstrap, gw.model, len(expected) + 1)
    by_id = {r["request_id"]: r for r in records}
    assert len(records) == len(by_id) == len(expected) + 1
    assert set(by_id) == expected | {big_id}
    for rid in expected:
        r = by_id[rid]
        i = int(rid.split("-")[2])
        assert (r["status"], r["client_id"], r["revision"], r["service"]) == (
            200,
            "bf-app",
            "r1",
            gw.model,
        )
        assert r["request"]["encoding"] == "json"
        assert r["request"]["body"]["inputs"][0]["data"] == [i]
        assert r["response"]["body"]["outputs"][0]["data"] == [2.0 * i]
    big_record = by_id[big_id]
    assert big_record["request"]["skipped"] == "too_large" and big_record["request"]["body"] is None
    assert big_record["response"]["skipped"] == "too_large"  # the answer is as large
    assert (big_record["request"]["size"], big_record["response"]["size"]) == big_sizes
