"""Streamed answers pass through the gateway as they arrive, without being buffered whole."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from aimp_core.events import TOPIC_REQUESTS
from aimp_core.registry_client import EurekaClient, instance_document

from .gateways import AiohttpServer

pytestmark = pytest.mark.integration

#: Two pieces: the second is only sent once the test has seen the first through the gateway.
FIRST, SECOND = b"data: one\n\n", b"data: two\n\n"
#: Larger than the gateway's default stream threshold (1 MiB), with a Content-Length.
BIG = bytes(range(256)) * (5 * 4096)


class StreamingUpstream(AiohttpServer):
    """An aiohttp pod whose answers are streams: SSE, chunked, large, cut off, endless."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.endless_closed = threading.Event()

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        resp.content_length = None
        await resp.prepare(request)
        await resp.write(FIRST)
        await asyncio.to_thread(self.release.wait, 10)
        await resp.write(SECOND)
        await resp.write_eof()
        return resp

    async def _big(self, request: web.Request) -> web.Response:
        return web.Response(body=BIG, content_type="application/octet-stream")

    async def _cut(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(FIRST)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()  # the pod dies mid-answer
        return resp

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for _ in range(400):  # 20 s at most
                await resp.write(FIRST)
                await asyncio.sleep(0.05)
        except (ConnectionResetError, OSError):
            self.endless_closed.set()
        return resp

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/sse", self._sse)
        app.router.add_get("/big", self._big)
        app.router.add_get("/cut", self._cut)
        app.router.add_get("/endless", self._endless)


async def _event(bootstrap: str, request_id: str, timeout_s: float = 15) -> dict[str, object]:
    """The request event of ``request_id`` on Kafka, read from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not (partitions := consumer.partitions_for_topic(TOPIC_REQUESTS)):
            assert time.monotonic() < deadline, f"topic {TOPIC_REQUESTS} never appeared"
            await consumer.topics()
            await asyncio.sleep(0.2)
        tps = [TopicPartition(TOPIC_REQUESTS, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    event: dict[str, object] = json.loads(record.value)
                    if event["request_id"] == request_id:
                        return event
    finally:
        await consumer.stop()
    raise AssertionError(f"no event for request {request_id}")


async def _register(registry_url: str, app: str, port: int) -> None:
    client = EurekaClient(registry_url, timeout_s=5)
    try:
        await client.register(
            instance_document(app=app, instance_id=f"{app.lower()}-1", ip="127.0.0.1", port=port)
        )
    finally:
        await client.aclose()


Streaming = tuple[str, dict[str, str], StreamingUpstream]


@pytest.fixture(scope="module")
def streaming(gateway, registry_url: str) -> Iterator[Streaming]:  # type: ignore[no-untyped-def]
    """The streaming pod registered as its own service: (service base URL, auth, pod)."""
    server = StreamingUpstream()
    server.start()
    name = f"stream-{uuid.uuid4().hex[:6]}"
    asyncio.run(_register(registry_url, name.upper(), server.port))
    headers = gateway.auth("stream-app")
    base = f"{gateway.url}/svc/{name}"
    for _ in range(50):
        if httpx.get(f"{base}/big", headers=headers).status_code == 200:
            break
        threading.Event().wait(0.1)
    else:
        raise AssertionError("the streaming service never became routable")
    yield base, headers, server
    server.release.set()
    server.stop()


def test_sse_reaches_the_caller_before_the_pod_has_finished(streaming: Streaming) -> None:
    """The first event arrives through the gateway while the pod still holds back the second."""
    base, headers, upstream = streaming
    upstream.release.clear()
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", f"{base}/sse", headers=headers) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream"
        assert "content-length" not in resp.headers
        pieces = resp.iter_raw()
        first = next(pieces)
        assert first == FIRST  # seen while the pod waits: nothing was buffered
        upstream.release.set()
        rest = b"".join(pieces)
    assert first + rest == FIRST + SECOND


def test_large_fixed_length_answer_passes_byte_exact(streaming: Streaming) -> None:
    """A body above the stream threshold keeps its Content-Length and every byte."""
    base, headers, _ = streaming
    resp = httpx.get(f"{base}/big", headers=headers, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-length"] == str(len(BIG))
    assert resp.content == BIG


async def test_a_pod_breaking_mid_stream_cuts_the_answer_and_marks_the_event(
    streaming: Streaming, kafka_bootstrap: str
) -> None:
    """After the head was sent a pod's break ends the answer unfinished; the event says so."""
    base, headers, _ = streaming
    got = b""
    request_id = uuid.uuid4().hex
    async with httpx.AsyncClient(timeout=10) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            async with http.stream(
                "GET", f"{base}/cut", headers={**headers, "x-request-id": request_id}
            ) as resp:
                assert resp.status_code == 200  # the head had gone out before the break
                async for piece in resp.aiter_raw():
                    got += piece
    assert got == FIRST
    event = await _event(kafka_bootstrap, request_id)
    assert (event["status"], event["outcome"]) == (200, "upstream_error")
    assert event["bytes_out"] == len(FIRST)


def test_a_caller_leaving_stops_the_pods_stream(streaming: Streaming) -> None:
    """When the caller disconnects mid-stream the gateway drops the pod's connection too."""
    base, headers, upstream = streaming
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", f"{base}/endless", headers=headers) as resp,
    ):
        assert next(resp.iter_raw()) == FIRST
    assert upstream.endless_closed.wait(10), "the pod kept streaming to nobody"
