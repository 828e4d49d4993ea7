"""The data plane end to end: real gateway, Redis, registry, Tansu and an OIP upstream."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from aiokafka import AIOKafkaConsumer, TopicPartition
from tritonclient.utils import InferenceServerException

from aimp_core.events import TOPIC_REQUESTS

pytestmark = pytest.mark.integration


def _binary_infer_body(values: np.ndarray) -> tuple[bytes, int]:
    raw = values.astype(np.float32).tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": list(values.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return head + raw, len(head)


async def _events(
    bootstrap: str, request_ids: set[str], timeout_s: float = 15
) -> list[dict[str, Any]]:
    """Every request event whose request_id is in ``request_ids``, read from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        partitions: set[int] | None = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(TOPIC_REQUESTS)
            if not partitions:
                await consumer.topics()
                await asyncio.sleep(0.2)
        assert partitions, f"topic {TOPIC_REQUESTS} never appeared"
        tps = [TopicPartition(TOPIC_REQUESTS, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen_ids: set[str] = set()
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for rec in records:
                    event = json.loads(rec.value)
                    if event["request_id"] in request_ids:
                        assert rec.key == event["service"].encode()
                        found.append(event)
                        seen_ids.add(event["request_id"])
            if seen_ids == request_ids:
                await asyncio.sleep(0.3)  # a duplicate would arrive right behind
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    found += [
                        json.loads(r.value)
                        for r in records
                        if json.loads(r.value)["request_id"] in request_ids
                    ]
                return found
    finally:
        await consumer.stop()
    return found


def test_no_token_is_401_with_bearer_challenge(gateway) -> None:  # type: ignore[no-untyped-def]
    """A call without a token is 401 with WWW-Authenticate: Bearer, in {"error"} under /v2."""
    resp = httpx.get(f"{gateway.url}/v2/models/{gateway.model}/ready")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert set(resp.json()) == {"error"}
    svc = httpx.get(f"{gateway.url}/svc/{gateway.model}/echo/x")
    assert svc.status_code == 401 and svc.headers["content-type"] == "application/problem+json"
    assert svc.json()["status"] == 401 and svc.json()["request_id"] == svc.headers["x-request-id"]


def test_client_without_invoke_role_is_403(gateway) -> None:  # type: ignore[no-untyped-def]
    """A client whose roles do not cover the model is refused with 403."""
    resp = httpx.get(f"{gateway.url}/v2/models/{gateway.model}", headers=gateway.auth("narrow-app"))
    assert resp.status_code == 403
    assert "invoke:" in resp.json()["error"]


def test_unknown_model_is_404_error(gateway) -> None:  # type: ignore[no-untyped-def]
    """A model the registry does not know is 404 in the protocol's {"error"} shape."""
    resp = httpx.get(
        f"{gateway.url}/v2/models/no-such-model/ready", headers=gateway.auth("invoker-app")
    )
    assert resp.status_code == 404
    assert resp.json()["error"].startswith("model 'no-such-model' is not deployed;")


def test_known_model_without_up_instance_is_503(gateway) -> None:  # type: ignore[no-untyped-def]
    """A registered app with no UP instance is 503 with Retry-After."""
    resp = httpx.post(
        f"{gateway.url}/v2/models/{gateway.starting_model}/infer",
        headers=gateway.auth("invoker-app"),
        content=b"{}",
    )
    assert resp.status_code == 503
    assert int(resp.headers["retry-after"]) >= 1
    assert "no instance UP" in resp.json()["error"]


def test_binary_infer_is_forwarded_byte_exact(gateway) -> None:  # type: ignore[no-untyped-def]
    """Request and response bodies and the inference headers cross the gateway unchanged."""
    body, head_len = _binary_infer_body(np.arange(8, dtype=np.float32).reshape(2, 4))
    token = gateway.auth("invoker-app")
    resp = httpx.post(
        f"{gateway.url}/v2/models/{gateway.model}/versions/1/infer",
        headers={
            **token,
            "Inference-Header-Content-Length": str(head_len),
            "Content-Type": "application/octet-stream",
            "x-custom": "kept",
        },
        content=body,
    )
    assert resp.status_code == 200, resp.text
    seen = gateway.upstream.seen[-1]
    assert seen.raw_path == f"/v2/models/{gateway.model}/versions/1/infer"
    assert seen.body == body
    sent = {k.lower(): v for k, v in seen.headers}
    assert sent["inference-header-content-length"] == str(head_len)
    assert sent["authorization"] == token["Authorization"]
    assert sent["x-custom"] == "kept" and sent["content-type"] == "application/octet-stream"
    assert sent["x-request-id"] == resp.headers["x-request-id"]
    assert sent["traceparent"].split("-")[1] == resp.headers["traceparent"].split("-")[1]
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert resp.content == seen.response_body
    assert resp.headers["inference-header-content-length"] == str(len(seen.response_body) - 32)
    assert resp.headers["x-pod-header"] == "pod-1"
    out = np.frombuffer(resp.content[-32:], dtype=np.float32)
    assert out.tolist() == [2.0 * i for i in range(8)]


def test_tritonclient_works_through_the_gateway(gateway) -> None:  # type: ignore[no-untyped-def]
    """tritonclient.http with a Bearer header gets metadata and binary inference results."""
    headers = gateway.auth("triton-app")
    client = triton.InferenceServerClient(gateway.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.get_server_metadata()["name"] == "aimp-gateway"
        assert client.is_model_ready(gateway.model, headers=headers)
        assert client.get_model_metadata(gateway.model, headers=headers)["name"] == gateway.model
        data = np.random.default_rng(1).random((3, 4), dtype=np.float32)
        inp = triton.InferInput("INPUT0", list(data.shape), "FP32")
        inp.set_data_from_numpy(data, binary_data=True)
        result = client.infer(
            gateway.model,
            [inp],
            outputs=[triton.InferRequestedOutput("OUTPUT0", binary_data=True)],
            headers=headers,
        )
        assert np.array_equal(result.as_numpy("OUTPUT0"), data * 2)
        with pytest.raises(InferenceServerException, match="not deployed"):
            client.get_model_metadata("missing-model", headers=headers)
        with pytest.raises(InferenceServerException, match="Authorization"):
            client.get_model_metadata(gateway.model)
    finally:
        client.close()


def test_generic_call_keeps_path_query_and_method(gateway) -> None:  # type: ignore[no-untyped-def]
    """/svc/{service}/{path} reaches {instance}/{path} with the raw path and query string."""
    resp = httpx.put(
        f"{gateway.url}/svc/{gateway.model}/echo/a%2Fb/c?x=1&y=%20z",
        headers=gateway.auth("invoker-app"),
        content=b"12345",
    )
    assert resp.status_code == 200
    assert resp.json() == {"method": "PUT", "raw_path": "/echo/a%2Fb/c?x=1&y=%20z", "body_len": 5}


def test_burst_then_429_with_ratelimit_headers(gateway) -> None:  # type: ignore[no-untyped-def]
    """After its burst a client gets 429 with Retry-After and the IETF RateLimit headers."""
    headers = gateway.auth("burst-app")
    url = f"{gateway.url}/v2/models/{gateway.model}/ready"
    with httpx.Client() as http:
        statuses = [http.get(url, headers=headers).status_code for _ in range(30)]
        refused = http.get(url, headers=headers)
    assert statuses[:20] == [200] * 20
    assert 429 in statuses and refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-policy"] == '"client-rate";q=2;w=1;burst=20'
    assert refused.headers["ratelimit"].startswith('"client-rate";r=0;t=')
    assert "over its rate limit" in refused.json()["error"]


async def test_one_event_per_call_on_kafka(gateway, kafka_bootstrap: str) -> None:  # type: ignore[no-untyped-def]
    """Each data-plane call, refused or forwarded, yields exactly one event with its facts."""
    async with httpx.AsyncClient() as http:
        token = {"Authorization": f"Bearer {gateway.token('invoker-app')}"}
        unauth = await http.get(f"{gateway.url}/v2/models/{gateway.model}/ready")
        missing = await http.get(f"{gateway.url}/svc/ghost-svc/x", headers=token)
        body, head_len = _binary_infer_body(np.ones((1, 4), dtype=np.float32))
        ok = await http.post(
            f"{gateway.url}/v2/models/{gateway.model}/infer",
            content=body,
            headers={**token, "Inference-Header-Content-Length": str(head_len)},
        )
    ids = {r.headers["x-request-id"]: r for r in (unauth, missing, ok)}
    events = await _events(kafka_bootstrap, set(ids))
    by_id = {e["request_id"]: e for e in events}
    assert len(events) == 3 and set(by_id) == set(ids)

    e = by_id[unauth.headers["x-request-id"]]
    assert (e["status"], e["outcome"], e["client_id"], e["service"]) == (
        401,
        "unauthorized",
        "",
        gateway.model,
    )
    e = by_id[missing.headers["x-request-id"]]
    assert (e["status"], e["outcome"], e["client_id"], e["service"]) == (
        404,
        "not_found",
        "invoker-app",
        "ghost-svc",
    )
    e = by_id[ok.headers["x-request-id"]]
    assert (e["status"], e["outcome"], e["client_id"]) == (200, "ok", "invoker-app")
    assert (e["instance_id"], e["revision"]) == (gateway.instance_id, "r1")
    assert e["bytes_in"] == len(body) and e["bytes_out"] == len(ok.content)
    assert e["trace_id"] == ok.headers["traceparent"].split("-")[1]
    assert e["latency_ms"] >= e["upstream_ms"] > 0


def test_large_body_with_expect_continue(gateway) -> None:  # type: ignore[no-untyped-def]
    """A 1 MiB body sent with Expect: 100-continue (as curl does) arrives whole, without Expect."""
    body = bytes(range(256)) * 4096
    resp = httpx.post(
        f"{gateway.url}/svc/{gateway.model}/echo/big",
        headers={**gateway.auth("invoker-app"), "Expect": "100-continue"},
        content=body,
    )
    assert resp.status_code == 200 and resp.json()["body_len"] == len(body)
    seen = gateway.upstream.seen[-1]
    assert seen.body == body
    assert "expect" not in {k.lower() for k, _ in seen.headers}
