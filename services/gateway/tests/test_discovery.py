"""Discovery against the real registry: the change stream, the polling fallback, outages."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from aimp_core.net import free_port
from aimp_core.registry_client import EurekaClient, Instance, instance_document
from aimp_gateway.discovery import MODE_POLL, MODE_STREAM, Discovery

pytestmark = pytest.mark.integration

REGISTRY = str(Path(sys.executable).parent / "aimp-registry")


class Seen:
    """What the discovery handed over last, and when each instance id was first UP in it."""

    def __init__(self) -> None:
        self.instances: list[Instance] = []
        self.up_at: dict[str, float] = {}

    def __call__(self, instances: list[Instance]) -> None:
        self.instances = instances
        now = time.perf_counter()
        for inst in instances:
            if inst.status == "UP":
                self.up_at.setdefault(inst.instance_id, now)

    def status(self, instance_id: str) -> str | None:
        return next((i.status for i in self.instances if i.instance_id == instance_id), None)


async def _until(cond: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def _register(registry_url: str, app: str, *, status: str = "UP") -> str:
    instance_id = f"{app.lower()}-{uuid.uuid4().hex[:8]}"
    client = EurekaClient(registry_url, timeout_s=5)
    try:
        await client.register(
            instance_document(
                app=app, instance_id=instance_id, ip="127.0.0.1", port=free_port(), status=status
            )
        )
    finally:
        await client.aclose()
    return instance_id


def _discovery(url: str, seen: Seen, **kw: float) -> Discovery:
    return Discovery(
        EurekaClient(url, timeout_s=5),
        on_update=seen,
        poll_interval_s=kw.get("poll_interval_s", 0.2),
        stream_retry_s=kw.get("stream_retry_s", 60.0),
        backoff_max_s=kw.get("backoff_max_s", 0.5),
    )


async def test_stream_mode_sees_a_registration_and_a_status_change_at_once(
    registry_url: str,
) -> None:
    """On the aimp registry the stream is used: a new UP instance arrives within 0.5 s."""
    seen = Seen()
    discovery = _discovery(registry_url, seen)
    await discovery.start(wait_s=5)
    try:
        assert discovery.mode == MODE_STREAM and discovery.connected and discovery.fresh
        app = f"DISC-{uuid.uuid4().hex[:6].upper()}"
        sent = time.perf_counter()
        iid = await _register(registry_url, app)
        await _until(lambda: iid in seen.up_at, 0.5)
        assert seen.up_at[iid] - sent < 0.5
        client = EurekaClient(registry_url, timeout_s=5)
        await client.set_status(app, iid, "OUT_OF_SERVICE")
        await client.aclose()
        await _until(lambda: seen.status(iid) == "OUT_OF_SERVICE", 0.5)
        await discovery.check()
    finally:
        await discovery.stop()


@pytest.fixture
async def eureka_without_stream(registry_url: str) -> AsyncIterator[str]:
    """The real registry behind a proxy that answers 404 on /stream, as Netflix Eureka does."""
    http = httpx.AsyncClient(timeout=5)

    async def forward(request: web.Request) -> web.Response:
        if request.path.endswith("/stream"):
            return web.Response(status=404, text="Not Found")
        tail = request.path.removeprefix("/eureka")
        resp = await http.get(registry_url + tail, headers={"Accept": "application/json"})
        return web.Response(
            status=resp.status_code, body=resp.content, content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/eureka/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/eureka"
    await runner.cleanup()
    await http.aclose()


async def test_poll_mode_when_the_registry_has_no_stream(
    registry_url: str, eureka_without_stream: str
) -> None:
    """Without /stream the discovery polls GET /apps and still sees registrations."""
    seen = Seen()
    discovery = _discovery(eureka_without_stream, seen, poll_interval_s=0.2)
    await discovery.start(wait_s=5)
    try:
        assert discovery.mode == MODE_POLL and discovery.fresh
        sent = time.perf_counter()
        iid = await _register(registry_url, f"POLL-{uuid.uuid4().hex[:6].upper()}")
        await _until(lambda: iid in seen.up_at, 2.0)
        assert seen.up_at[iid] - sent < 0.2 + 0.5  # one poll interval and its round trip
        await discovery.check()
    finally:
        await discovery.stop()


def _start_registry(port: int, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AIMP_REGISTRY_PORT": str(port), "AIMP_HOME": str(home)}
    with (home / f"registry-{time.monotonic_ns()}.log").open("wb") as out:
        return subprocess.Popen([REGISTRY], env=env, stdout=out, stderr=subprocess.STDOUT)


async def _wait_healthy(url: str) -> None:
    async with httpx.AsyncClient(timeout=1) as http:
        for _ in range(300):
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered")


async def test_registry_outage_keeps_the_last_instances_and_reconnects(tmp_path: Path) -> None:
    """While the registry is down nothing is forgotten; when it is back the stream resumes."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/eureka"
    proc = _start_registry(port, tmp_path)
    seen = Seen()
    discovery = _discovery(url, seen, backoff_max_s=0.3)
    try:
        await _wait_healthy(f"http://127.0.0.1:{port}/healthz")
        app = f"OUT-{uuid.uuid4().hex[:6].upper()}"
        before = await _register(url, app)
        await discovery.start(wait_s=5)
        assert discovery.mode == MODE_STREAM and seen.status(before) == "UP"
        proc.terminate()
        proc.wait(15)
        await _until(lambda: not discovery.connected, 2.0)
        assert seen.status(before) == "UP"  # still routable
        with pytest.raises(httpx.HTTPError):
            await discovery.check()
        await asyncio.sleep(1.0)  # several failed reconnects
        assert seen.status(before) == "UP"
        proc = _start_registry(port, tmp_path)  # state persisted: the instance is back too
        await _until(lambda: discovery.connected, 15.0)
        after = await _register(url, app)
        await _until(lambda: after in seen.up_at, 1.0)
        assert seen.status(before) == "UP"
        await discovery.check()
    finally:
        await discovery.stop()
        proc.terminate()
        proc.wait(15)
