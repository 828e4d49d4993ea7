"""The fuses in a real gateway: breakers trip and recover, bulkheads, fallbacks, timeouts.

The gateway runs as in production (uvicorn, lifespan) against the real registry,
Redis and Tansu; the upstream is a real local HTTP server whose answers a test
switches between healthy and failing. Policies are set by swapping the plane's
live snapshot (with a version far above anything the config center stores, so
its follower never swaps it back).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import httpx
import pytest
from aiohttp import web

from aimp_core.net import free_port
from aimp_gateway.asgi import GatewayApp
from aimp_gateway.policy import (
    BreakerPolicy,
    ConfigSnapshot,
    FallbackPolicy,
    LbAlgorithm,
    RetryPolicy,
    ServicePolicy,
)

from .conftest import register
from .gateways import Backends, admin_token, client_token, start_gateway, write_credentials_file

pytestmark = pytest.mark.integration

CLIENT = "fuse-app"
#: Far above any version the config center stores in a test: its follower keeps ours.
VERSION = 1_000_000_000


class SwitchableUpstream:
    """HTTP servers on several ports; each answers ``/work`` as its mode says.

    Modes: ``ok`` (200), ``fail`` (500), ``shed`` (503, a sidecar shedding load).
    ``/slow/{s}`` answers 200 after ``s`` seconds.
    """

    def __init__(self, ports: int) -> None:
        self.ports = [free_port() for _ in range(ports)]
        self.mode = dict.fromkeys(self.ports, "ok")
        self.hits = dict.fromkeys(self.ports, 0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []

    def _app(self, port: int) -> web.Application:
        async def work(_: web.Request) -> web.Response:
            self.hits[port] += 1
            mode = self.mode[port]
            if mode == "fail":
                return web.json_response({"error": "broken"}, status=500)
            if mode == "shed":
                return web.json_response({"error": "queue full"}, status=503)
            return web.json_response({"ok": True, "port": port})

        async def slow(request: web.Request) -> web.Response:
            self.hits[port] += 1
            await asyncio.sleep(float(request.match_info["seconds"]))
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_route("*", "/work", work)
        app.router.add_get("/slow/{seconds}", slow)
        return app

    async def _start(self) -> None:
        for port in self.ports:
            runner = web.AppRunner(self._app(port), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self._runners.append(runner)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        for runner in self._runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def set_all(self, mode: str) -> None:
        for port in self.ports:
            self.mode[port] = mode

    @property
    def total_hits(self) -> int:
        return sum(self.hits.values())


@dataclass
class FuseGateway:
    app: GatewayApp
    url: str
    upstream: SwitchableUpstream
    registry_url: str
    headers: dict[str, str]
    admin: dict[str, str]
    policies: dict[str, ServicePolicy] = field(default_factory=dict)

    def set_policy(self, service: str, policy: ServicePolicy) -> None:
        """Put ``policy`` in force for ``service`` (the plane reads it on the next call)."""
        self.policies[service] = policy
        self.app.plane.config.snapshot = ConfigSnapshot(
            version=VERSION + len(self.policies), services=MappingProxyType(dict(self.policies))
        )

    def service(self, *ports: int, status: str = "UP") -> str:
        """A fresh service with one instance per port, routable through the gateway."""
        name = f"fuse-{uuid.uuid4().hex[:6]}"
        for port in ports:
            register(self.registry_url, name.upper(), port, status=status)
        deadline = time.monotonic() + 10
        want = len(ports) if status == "UP" else 0
        while time.monotonic() < deadline:
            table = self.app.plane.router.table
            if name.upper() in table.known and len(table.up.get(name.upper(), ())) == want:
                return name
            time.sleep(0.05)
        raise AssertionError(f"{name} never reached the gateway's routing table")

    def call(self, service: str, path: str = "/work") -> httpx.Response:
        return httpx.get(f"{self.url}/svc/{service}{path}", headers=self.headers, timeout=10)


@pytest.fixture(scope="module")
def fgw(tmp_path_factory: pytest.TempPathFactory, backends: Backends) -> Iterator[FuseGateway]:
    """A real gateway with a generous rate limit, and a switchable two-port upstream."""
    home: Path = tmp_path_factory.mktemp("fuses")
    secret = uuid.uuid4().hex
    creds = write_credentials_file(home, {CLIENT: ["invoker"]}, {CLIENT: secret})
    upstream = SwitchableUpstream(2)
    upstream.start()
    started = start_gateway(
        backends, home, creds,
        gateway_rate_per_s=10_000, gateway_rate_burst=10_000, gateway_instance_header=True,
    )  # fmt: skip
    token = client_token(started.url, CLIENT, secret)
    admin = admin_token(started.url)
    yield FuseGateway(
        started.app, started.url, upstream, backends.registry_url,
        {"Authorization": f"Bearer {token}"}, {"Authorization": f"Bearer {admin}"},
    )  # fmt: skip
    started.server.stop()
    upstream.stop()


def _breaker(fgw: FuseGateway, service: str, instance_id: str = "") -> dict[str, object]:
    resp = httpx.get(fgw.url + "/admin/breakers", headers=fgw.admin)
    assert resp.status_code == 200, resp.text
    for row in resp.json()["breakers"]:
        if row["service"] == service and row["instance_id"] == instance_id:
            return dict(row)
    raise AssertionError(f"no breaker for {service!r} {instance_id!r} in {resp.json()}")


def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


BREAKER = BreakerPolicy(
    window="count", window_size=6, minimum_calls=4, open_wait_s=1.0, half_open_calls=2
)


def test_failing_upstream_trips_fails_fast_then_recovers(fgw: FuseGateway) -> None:
    """500s trip the breaker within its window; then 503 + Retry-After without calling the
    pod; after the pod recovers and the wait passes, trial calls close the breaker."""
    port = fgw.upstream.ports[0]
    service = fgw.service(port)
    fgw.set_policy(service, ServicePolicy(breaker=BREAKER, retry=RetryPolicy(attempts=1)))
    fgw.upstream.mode[port] = "ok"
    for _ in range(3):
        assert fgw.call(service).status_code == 200
    fgw.upstream.mode[port] = "fail"
    failures = 0
    while True:
        resp = fgw.call(service)
        if resp.status_code != 500:
            break
        failures += 1
        assert failures <= BREAKER.window_size, "the breaker did not trip within its window"
    assert failures == 3  # 3 ok + 3 failed = 50 % of 6: open
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    assert "circuit breaker" in resp.json()["detail"]
    assert resp.headers["content-type"].startswith("application/problem+json")
    hits = fgw.upstream.hits[port]
    for _ in range(5):
        refused = fgw.call(service)
        assert refused.status_code == 503 and "retry-after" in refused.headers
    assert fgw.upstream.hits[port] == hits  # failing fast: the pod saw none of them
    row = _breaker(fgw, service)
    assert row["state"] == "open" and row["failure_rate_percent"] == 50.0
    assert 0 < float(str(row["retry_after_s"])) <= BREAKER.open_wait_s
    metrics = httpx.get(fgw.url + "/metrics").text
    assert f'aimp_gateway_breaker_state{{instance="",service="{service}"}} 1.0' in metrics

    fgw.upstream.mode[port] = "ok"
    _until(lambda: _breaker(fgw, service)["state"] == "half_open", BREAKER.open_wait_s + 2)
    for _ in range(BREAKER.half_open_calls):
        assert fgw.call(service).status_code == 200
    assert _breaker(fgw, service)["state"] == "closed"
    assert all(fgw.call(service).status_code == 200 for _ in range(5))


def test_shedding_503_does_not_trip_the_breaker(fgw: FuseGateway) -> None:
    """A pod answering 503 (a sidecar shedding load) is passed through, never trips it."""
    port = fgw.upstream.ports[0]
    service = fgw.service(port)
    fgw.set_policy(service, ServicePolicy(breaker=BREAKER))
    fgw.upstream.mode[port] = "shed"
    try:
        for _ in range(BREAKER.window_size * 2):
            resp = fgw.call(service)
            assert resp.status_code == 503 and resp.json() == {"error": "queue full"}
    finally:
        fgw.upstream.mode[port] = "ok"
    assert _breaker(fgw, service)["state"] == "closed"


def test_open_breaker_serves_the_fallback(fgw: FuseGateway) -> None:
    """With a fallback configured, an open breaker answers it, marked x-aimp-fallback."""
    port = fgw.upstream.ports[1]
    service = fgw.service(port)
    fallback = FallbackPolicy(status=200, content_type="application/json", body=b'{"cached":1}')
    policy = ServicePolicy(
        breaker=BreakerPolicy(window_size=2, minimum_calls=2, open_wait_s=30),
        retry=RetryPolicy(attempts=1),
        fallback=fallback,
    )
    fgw.set_policy(service, policy)
    fgw.upstream.mode[port] = "fail"
    try:
        assert [fgw.call(service).status_code for _ in range(2)] == [500, 500]
        resp = fgw.call(service)
    finally:
        fgw.upstream.mode[port] = "ok"
    assert resp.status_code == 200 and resp.content == b'{"cached":1}'
    assert resp.headers["x-aimp-fallback"] == "true"
    assert resp.headers["content-type"] == "application/json"


def test_no_instance_up_serves_the_fallback(fgw: FuseGateway) -> None:
    """A service with no UP instance answers its fallback instead of 503."""
    service = fgw.service(fgw.upstream.ports[0], status="STARTING")
    fallback = FallbackPolicy(status=202, content_type="text/plain", body=b"later")
    fgw.set_policy(service, ServicePolicy(fallback=fallback))
    resp = fgw.call(service)
    assert resp.status_code == 202 and resp.text == "later"
    assert resp.headers["x-aimp-fallback"] == "true"


def test_full_bulkhead_refuses_at_once(fgw: FuseGateway) -> None:
    """With max_concurrent=1 a second call while one is in flight gets 503 + Retry-After: 1."""
    service = fgw.service(fgw.upstream.ports[0])
    fgw.set_policy(service, ServicePolicy(max_concurrent=1))
    results: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: results.append(fgw.call(service, "/slow/1.0")))
    slow.start()
    _until(lambda: _in_flight(fgw, service) == 1, 5)
    started = time.monotonic()
    resp = fgw.call(service)
    assert time.monotonic() - started < 0.9  # refused at once, not queued behind the slow one
    slow.join(10)
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert "bulkhead" in resp.json()["detail"]
    assert results[0].status_code == 200
    assert fgw.call(service).status_code == 200  # the place is free again


def _in_flight(fgw: FuseGateway, service: str) -> int:
    fuses = fgw.app.plane.fuses.of(service, fgw.policies[service])
    return fuses.bulkhead.in_flight if fuses.bulkhead is not None else 0


def test_policy_timeout_applies_per_call(fgw: FuseGateway) -> None:
    """The policy's timeout_s cuts a slow call with 504 well before the gateway default."""
    service = fgw.service(fgw.upstream.ports[0])
    fgw.set_policy(service, ServicePolicy(timeout_s=0.3, breaker=None))
    started = time.monotonic()
    resp = fgw.call(service, "/slow/2")
    assert resp.status_code == 504
    assert time.monotonic() - started < 1.5


def test_instance_breaker_cuts_off_one_bad_pod(fgw: FuseGateway) -> None:
    """With per-instance breakers, a failing pod's breaker opens and calls go to the good one."""
    good, bad = fgw.upstream.ports
    service = fgw.service(good, bad)
    fgw.set_policy(
        service,
        ServicePolicy(
            lb=LbAlgorithm.ROUND_ROBIN,
            breaker=None,
            instance_breaker=BreakerPolicy(window_size=2, minimum_calls=2, open_wait_s=30),
            retry=RetryPolicy(attempts=1),
        ),
    )
    fgw.upstream.mode[bad] = "fail"
    try:
        statuses = [fgw.call(service).status_code for _ in range(12)]
        assert statuses.count(500) == 2  # exactly the window's worth, then the pod is cut off
        bad_hits = fgw.upstream.hits[bad]
        assert all(fgw.call(service).status_code == 200 for _ in range(6))
        assert fgw.upstream.hits[bad] == bad_hits
    finally:
        fgw.upstream.mode[bad] = "ok"
    rows = httpx.get(fgw.url + "/admin/breakers", headers=fgw.admin).json()["breakers"]
    states = sorted(r["state"] for r in rows if r["service"] == service)
    assert states == ["closed", "open"]


def test_unknown_pinned_revision_is_404(fgw: FuseGateway) -> None:
    """A pin header naming a revision the service lacks is a clear 404 problem."""
    service = fgw.service(fgw.upstream.ports[0])
    resp = httpx.get(
        f"{fgw.url}/svc/{service}/work",
        headers={**fgw.headers, "x-aimp-revision": "no-such-rev"},
    )
    assert resp.status_code == 404
    assert "no revision 'no-such-rev'" in resp.json()["detail"]


def test_breakers_need_an_admin_read_role(fgw: FuseGateway) -> None:
    """GET /admin/breakers refuses an invoker token with 403 and no token with 401."""
    assert httpx.get(fgw.url + "/admin/breakers", headers=fgw.headers).status_code == 403
    assert httpx.get(fgw.url + "/admin/breakers").status_code == 401
