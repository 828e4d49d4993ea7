"""Integration tests: the real aimp-sidecar process, the real registry, a real OIP upstream.

The upstream is a small aiohttp server speaking the Open Inference Protocol's
HTTP paths (the Triton path is covered by the pod and end-to-end tests).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from aimp_core.net import free_port
from aimp_core.registry_client import EurekaClient, Instance

pytestmark = pytest.mark.integration

SIDECAR = str(Path(sys.executable).parent / "aimp-sidecar")
REGISTRY = str(Path(sys.executable).parent / "aimp-registry")


@dataclass
class Upstream:
    url: str
    ready: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """An OIP server: readiness that the test flips, an echoing infer and a slow path."""
    port = free_port()
    state = Upstream(f"http://127.0.0.1:{port}")

    async def ready(_request: web.Request) -> web.Response:
        return web.Response(status=200 if state.ready else 503)

    async def infer(request: web.Request) -> web.Response:
        body = await request.read()
        state.seen.append(
            {
                "headers": request.headers.copy(),
                "query": request.rel_url.raw_query_string,
                "raw_path": request.raw_path,
                "body": body,
            }
        )
        return web.Response(
            body=b'{"outputs":[]}' + body[::-1],
            headers={
                "Inference-Header-Content-Length": "14",
                "Content-Type": "application/octet-stream",
            },
        )

    async def slow(_request: web.Request) -> web.Response:
        await state.release.wait()
        return web.json_response({"slow": "done"})

    app = web.Application()
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/v2/models/{name}/ready", ready)
    app.router.add_post("/v2/models/{name}/infer", infer)
    app.router.add_post("/v2/models/{name}/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield state
    await runner.cleanup()


@dataclass
class SidecarProc:
    proc: subprocess.Popen[bytes]
    url: str
    service: str
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def start_sidecar(tmp_path: Path, sidecar_keys: Any) -> Iterator[Callable[..., SidecarProc]]:
    started: list[SidecarProc] = []

    def start(upstream_url: str, registry_url: str, **extra: str) -> SidecarProc:
        port = free_port()
        service = f"svc-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "AIMP_HOME": str(tmp_path / "home"),
            "AIMP_REGISTRY_URL": registry_url,
            "AIMP_JWKS_URL": sidecar_keys.jwks_url,
            "AIMP_TOKEN_ISSUER": sidecar_keys.issuer,
            "AIMP_SIDECAR_PORT": str(port),
            "AIMP_SIDECAR_SERVICE": service,
            "AIMP_SIDECAR_UPSTREAM_URL": upstream_url,
            "AIMP_SIDECAR_READY_POLL_INTERVAL_S": "0.1",
            "AIMP_SIDECAR_DRAIN_GRACE_S": "0.3",
            **extra,
        }
        log = tmp_path / f"sidecar-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([SIDECAR], env=env, stdout=out, stderr=subprocess.STDOUT)
        sc = SidecarProc(proc, f"http://127.0.0.1:{port}", service, log)
        started.append(sc)
        return sc

    yield start
    for sc in started:
        if sc.proc.poll() is None:
            sc.proc.kill()
            sc.proc.wait()


def start_registry(port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    """The real registry process on ``port``."""
    home = tmp_path / "registry-home"
    home.mkdir()
    env = {**os.environ, "AIMP_REGISTRY_PORT": str(port), "AIMP_HOME": str(home)}
    with (tmp_path / "registry.log").open("wb") as out:
        return subprocess.Popen([REGISTRY], env=env, stdout=out, stderr=subprocess.STDOUT)


async def instance_of(registry_url: str, service: str) -> Instance | None:
    client = EurekaClient(registry_url, timeout_s=2)
    try:
        found = [i for i in await client.applications() if i.app == service.upper()]
    except httpx.HTTPError:
        return None
    finally:
        await client.aclose()
    return found[0] if found else None


async def wait_status(
    registry_url: str, sc: SidecarProc, status: str | None, timeout_s: float
) -> None:
    """Wait until the registry shows the sidecar's instance with ``status`` (None: absent)."""
    deadline = time.monotonic() + timeout_s
    seen: str | None = "never looked"
    while time.monotonic() < deadline:
        inst = await instance_of(registry_url, sc.service)
        seen = inst.status if inst else None
        if seen == status:
            return
        if sc.proc.poll() is not None and status is not None:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"registry shows {seen!r}, wanted {status!r}\n{sc.logs()}")


async def sidecar_metrics(http: httpx.AsyncClient, service: str) -> dict[str, float]:
    """The sidecar's own metrics for ``service`` from GET /metrics, flattened.

    Gauges and the histogram's count by name; ``requests_total:<status>``; ``le:<bound>``.
    """
    resp = await http.get("/metrics")
    assert resp.status_code == 200
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(resp.text):
        if not family.name.startswith("aimp_sidecar_"):
            continue
        for sample in family.samples:
            if sample.labels.get("service") != service:
                continue
            if sample.name == "aimp_sidecar_requests_total":
                out[f"requests_total:{sample.labels['status']}"] = sample.value
            elif sample.name.endswith("_bucket"):
                out[f"le:{sample.labels['le']}"] = sample.value
            else:
                out[sample.name] = sample.value
    return out


async def test_registers_proxies_limits_and_drains(
    registry_url: str,
    upstream: Upstream,
    start_sidecar: Callable[..., SidecarProc],
    sidecar_keys: Any,
) -> None:
    """STARTING, then UP once ready, byte-exact proxying, 401/403/503, then a drain on SIGTERM."""
    sc = start_sidecar(
        upstream.url, registry_url, AIMP_SIDECAR_CONCURRENCY_LIMIT="1", AIMP_SIDECAR_QUEUE_SIZE="1"
    )
    await wait_status(registry_url, sc, "STARTING", 15)
    inst = await instance_of(registry_url, sc.service)
    assert inst is not None and inst.base_url == sc.url
    assert inst.metadata["aimp.revision"] == "1" and inst.metadata["aimp.runtime"] == "triton"
    assert inst.metadata["aimp.model"] == sc.service
    upstream.ready = True
    await wait_status(registry_url, sc, "UP", 3)

    token = sidecar_keys.mint([f"invoke:{sc.service}"])
    payload = bytes(range(256)) * 40
    async with httpx.AsyncClient(base_url=sc.url, timeout=10) as http:
        resp = await http.post(
            f"/v2/models/{sc.service}/infer?a=1&b=%20x",
            content=payload,
            headers={
                "Authorization": f"Bearer {token}",
                "Inference-Header-Content-Length": "5",
                "Content-Type": "application/octet-stream",
                "Keep-Alive": "timeout=9",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            },
        )
        assert resp.status_code == 200, resp.text
        assert resp.content == b'{"outputs":[]}' + payload[::-1]
        assert resp.headers["inference-header-content-length"] == "14"
        assert resp.headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
        seen = upstream.seen[-1]
        assert seen["body"] == payload and seen["query"] == "a=1&b=%20x"
        assert seen["headers"]["Inference-Header-Content-Length"] == "5"
        assert seen["headers"]["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
        assert "Keep-Alive" not in seen["headers"]
        assert seen["headers"]["x-request-id"] == resp.headers["x-request-id"]

        anonymous = await http.post(f"/v2/models/{sc.service}/infer", content=b"x")
        assert anonymous.status_code == 401 and "error" in anonymous.json()
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        other = sidecar_keys.mint(["invoke:someone-else"])
        denied = await http.post(
            f"/v2/models/{sc.service}/infer",
            content=b"x",
            headers={"Authorization": f"Bearer {other}"},
        )
        assert denied.status_code == 403

        # Limit 1 and queue 1: a third concurrent call is refused at once.
        auth = {"Authorization": f"Bearer {token}"}
        slow = [
            asyncio.create_task(http.post(f"/v2/models/{sc.service}/slow", headers=auth))
            for _ in range(2)
        ]
        await asyncio.sleep(0.3)
        busy = await sidecar_metrics(http, sc.service)
        assert (busy["aimp_sidecar_in_flight"], busy["aimp_sidecar_queued"]) == (1.0, 1.0)
        full = await http.post(f"/v2/models/{sc.service}/slow", headers=auth)
        assert full.status_code == 503 and full.headers["retry-after"] == "1"
        assert "capacity" in full.json()["error"]
        upstream.release.set()
        assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200]
        done = await sidecar_metrics(http, sc.service)
        assert (done["aimp_sidecar_in_flight"], done["aimp_sidecar_queued"]) == (0.0, 0.0)
        by_status = {k: v for k, v in done.items() if k.startswith("requests_total:")}
        assert by_status == {
            "requests_total:200": 3.0,
            "requests_total:401": 1.0,
            "requests_total:403": 1.0,
            "requests_total:503": 1.0,
        }
        # Every proxied call is timed; the two held calls waited >= 0.3 s.
        assert done["aimp_sidecar_request_duration_seconds_count"] == 6.0
        assert done["le:0.25"] <= 4.0 and done["le:+Inf"] == 6.0
        assert done["aimp_sidecar_registered"] == 1.0

        # Readiness lost and regained shows up in the registry.
        upstream.ready = False
        await wait_status(registry_url, sc, "DOWN", 3)
        assert (await http.get("/readyz")).status_code == 503
        upstream.ready = True
        await wait_status(registry_url, sc, "UP", 3)

        # SIGTERM with a call in flight: OUT_OF_SERVICE, new calls refused, the call finishes.
        upstream.release.clear()
        in_flight = asyncio.create_task(http.post(f"/v2/models/{sc.service}/slow", headers=auth))
        await asyncio.sleep(0.2)
        sc.proc.send_signal(signal.SIGTERM)
        await wait_status(registry_url, sc, "OUT_OF_SERVICE", 3)
        await asyncio.sleep(0.5)  # past the drain grace
        refused = await http.post(f"/v2/models/{sc.service}/infer", headers=auth, content=b"x")
        assert refused.status_code == 503 and "shutting down" in refused.json()["error"]
        assert sc.proc.poll() is None, "the sidecar must wait for the call in flight"
        upstream.release.set()
        assert (await in_flight).status_code == 200
    await wait_status(registry_url, sc, None, 5)
    assert await asyncio.to_thread(sc.proc.wait, 10) == 0, sc.logs()


async def test_survives_registry_outage_and_registers_later(
    upstream: Upstream, start_sidecar: Callable[..., SidecarProc], tmp_path: Path
) -> None:
    """With no registry the sidecar keeps serving; once one starts, it registers UP."""
    port = free_port()
    registry_url = f"http://127.0.0.1:{port}/eureka"
    upstream.ready = True
    sc = start_sidecar(
        upstream.url,
        registry_url,
        AIMP_SIDECAR_VERIFY_TOKENS="false",
        AIMP_SIDECAR_REGISTRY_BACKOFF_MAX_S="0.5",
    )
    async with httpx.AsyncClient(base_url=sc.url, timeout=5) as http:
        deadline = time.monotonic() + 15
        while True:
            try:
                if (await http.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and sc.proc.poll() is None, sc.logs()
            await asyncio.sleep(0.1)
        resp = await http.post(f"/v2/models/{sc.service}/infer", content=b"abc")
        assert resp.status_code == 200 and resp.content.endswith(b"cba")
    await asyncio.sleep(1.0)
    assert sc.proc.poll() is None
    registry = start_registry(port, tmp_path)
    try:
        await wait_status(registry_url, sc, "UP", 20)
    finally:
        registry.terminate()
        registry.wait(10)


async def test_w3c_trace_context_crosses_the_sidecar(
    registry_url: str, upstream: Upstream, start_sidecar: Callable[..., SidecarProc]
) -> None:
    """The upstream call joins the caller's trace under the sidecar's own span, keeps
    tracestate, and a call without trace context starts one; ids match the answer's."""
    upstream.ready = True
    sc = start_sidecar(upstream.url, registry_url, AIMP_SIDECAR_VERIFY_TOKENS="false")
    await wait_status(registry_url, sc, "UP", 15)
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with httpx.AsyncClient(base_url=sc.url, timeout=10) as http:
        resp = await http.post(
            f"/v2/models/{sc.service}/infer",
            content=b"x",
            headers={
                "traceparent": f"00-{trace_id}-{caller_span}-01",
                "tracestate": "vendor=abc",
                "x-request-id": "caller-rid-1",
            },
        )
        assert resp.status_code == 200
        sent = upstream.seen[-1]["headers"]
        version, seen_trace, seen_parent, flags = sent["traceparent"].split("-")
        assert (version, seen_trace, flags) == ("00", trace_id, "01")
        assert seen_parent != caller_span and len(seen_parent) == 16
        assert sent["tracestate"] == "vendor=abc"
        assert sent["x-request-id"] == resp.headers["x-request-id"] == "caller-rid-1"
        assert resp.headers["traceparent"] == sent["traceparent"]

        fresh = await http.post(f"/v2/models/{sc.service}/infer", content=b"y")
        assert fresh.status_code == 200
        sent = upstream.seen[-1]["headers"]
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", sent["traceparent"])
        assert sent["traceparent"].split("-")[1] not in (trace_id, "0" * 32)
        assert fresh.headers["traceparent"] == sent["traceparent"]
        assert sent["x-request-id"] == fresh.headers["x-request-id"] != ""
    sc.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(sc.proc.wait, 10) == 0, sc.logs()
