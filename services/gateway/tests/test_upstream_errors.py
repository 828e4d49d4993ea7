"""Upstream failures: refused connections retry another instance, then 502; slow pods 504."""

from __future__ import annotations

import socketserver
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from aimp_core.errors import GatewayTimeout
from aimp_core.net import free_port
from aimp_gateway.upstream import ConnectFailed, Upstream

from .gateways import tcp_server

pytestmark = pytest.mark.integration


async def test_refused_connection_is_connect_failed() -> None:
    """A port nothing listens on raises ConnectFailed (a 502 that is safe to retry)."""
    upstream = Upstream(connect_timeout_s=1, total_timeout_s=2, max_connections=10)
    await upstream.start()
    try:
        with pytest.raises(ConnectFailed) as err:
            await upstream.forward("GET", f"http://127.0.0.1:{free_port()}/x?secret=1", [], b"")
    finally:
        await upstream.close()
    assert err.value.status == 502 and "secret" not in err.value.detail
    assert err.value.gone  # refused: nothing listens there


async def test_slow_upstream_is_504(oip_upstream) -> None:  # type: ignore[no-untyped-def]
    """A pod slower than the total timeout gives 504 promptly."""
    upstream = Upstream(connect_timeout_s=1, total_timeout_s=0.3, max_connections=10)
    await upstream.start()
    try:
        with pytest.raises(GatewayTimeout):
            await upstream.forward("GET", f"http://127.0.0.1:{oip_upstream.port}/slow/2", [], b"")
    finally:
        await upstream.close()


def _wait_routable(gateway, model: str, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        resp = httpx.get(f"{gateway.url}/svc/{model}/echo/x", headers=headers)
        if resp.status_code != 404:
            return
        time.sleep(0.1)
    raise AssertionError(f"{model} never became routable")


def test_dead_instance_is_skipped_and_all_dead_is_502(gateway, register_instance) -> None:  # type: ignore[no-untyped-def]
    """With one dead and one live instance every call succeeds; with only a dead one it is 502."""
    headers = gateway.auth("invoker-app")
    mixed, dead = f"mixed-{uuid.uuid4().hex[:6]}", f"dead-{uuid.uuid4().hex[:6]}"
    register_instance(mixed.upper(), free_port())
    register_instance(mixed.upper(), gateway.upstream.port)
    register_instance(dead.upper(), free_port())
    _wait_routable(gateway, mixed, headers)
    _wait_routable(gateway, dead, headers)
    for _ in range(6):
        assert httpx.get(f"{gateway.url}/svc/{mixed}/echo/x", headers=headers).status_code == 200
    resp = httpx.get(f"{gateway.url}/svc/{dead}/echo/x", headers=headers)
    assert resp.status_code == 502
    assert resp.json()["title"] == "Bad gateway" and "did not accept" in resp.json()["detail"]


def test_a_dead_instance_is_ejected_after_one_refusal(gateway, register_instance) -> None:  # type: ignore[no-untyped-def]
    """After one refused connection the dead instance gets no more calls; every call succeeds."""
    headers = gateway.auth("eject-app")
    name = f"eject-{uuid.uuid4().hex[:6]}"
    live_ids = {
        register_instance(name.upper(), gateway.upstream.port),
        register_instance(name.upper(), gateway.upstream.port),
    }
    dead_id = register_instance(name.upper(), free_port())
    _wait_routable(gateway, name, headers)
    admin = gateway.admin_auth()
    with httpx.Client() as http:
        served = []
        for _ in range(9):  # limited by the test client's rate (burst 20, 2/s)
            resp = http.get(f"{gateway.url}/svc/{name}/echo/x", headers=headers)
            assert resp.status_code == 200
            served.append(resp.headers["x-aimp-instance"])
        state = http.get(f"{gateway.url}/admin/routing", headers=admin).json()
    assert set(served) <= live_ids  # the dead one never answered (the balancer picks)
    assert state["discovery"]["mode"] == "stream" and state["discovery"]["connected"]
    rows = {r["instance_id"]: r for r in state["services"][name]["instances"]}
    assert rows[dead_id]["ejected"] and not rows[dead_id]["routable"]
    assert rows[dead_id]["ejections_in_a_row"] == 1  # tried once, never again
    assert 0 < rows[dead_id]["ejected_for_s"] <= 5.0
    assert state["services"][name]["ejected"] == 1
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert f'aimp_gateway_outlier_ejected{{service="{name}"}} 1.0' in metrics
    assert f'aimp_gateway_upstream_retries_total{{reason="connect",service="{name}"}} 1.0' in (
        metrics
    )


def test_routing_state_needs_an_admin_or_operator(gateway) -> None:  # type: ignore[no-untyped-def]
    """GET /admin/routing refuses an invoker (403) and a caller without a token (401)."""
    assert httpx.get(f"{gateway.url}/admin/routing").status_code == 401
    resp = httpx.get(f"{gateway.url}/admin/routing", headers=gateway.auth("invoker-app"))
    assert resp.status_code == 403


def _bad_and_live(  # type: ignore[no-untyped-def]
    gateway, register_instance, headers: dict[str, str], prefix: str, bad_port: int
) -> tuple[str, str]:
    """A fresh routable service with an instance at ``bad_port`` and one live instance:
    (its name, the live instance's id)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    register_instance(name.upper(), bad_port)
    live: str = register_instance(name.upper(), gateway.upstream.port)
    _wait_routable(gateway, name, headers)
    return name, live


class _HangUp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(65536)  # the request arrives, no answer ever leaves


@pytest.fixture
def hang_up_server() -> Iterator[int]:
    """A real TCP server that reads each request and closes the connection without answering."""
    with tcp_server(_HangUp) as port:
        yield port


def test_broken_call_is_retried_only_when_idempotent(  # type: ignore[no-untyped-def]
    gateway, register_instance, hang_up_server: int
) -> None:
    """Broken after sending: a GET goes to another instance, a POST is 502 (never sent twice)."""
    headers = gateway.auth("retry-app")
    name, live = _bad_and_live(gateway, register_instance, headers, "hangup", hang_up_server)
    # Round robin, so that each pair of calls reaches both instances once.
    put = httpx.put(
        f"{gateway.url}/admin/config/services/{name}",
        json={"lb": "round_robin"},
        headers=gateway.admin_auth(),
    )
    assert put.status_code in (200, 201), put.text
    url = f"{gateway.url}/svc/{name}/echo/x"
    with httpx.Client() as http:
        posts = [http.post(url, headers=headers, content=b"1") for _ in range(2)]
        gets = [http.get(url, headers=headers) for _ in range(2)]
    assert sorted(r.status_code for r in posts) == [200, 502]
    broken = next(r for r in posts if r.status_code == 502)
    assert "broke off the call" in broken.json()["detail"]
    assert [r.status_code for r in gets] == [200, 200]
    assert {r.headers["x-aimp-instance"] for r in gets} == {live}
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert f'aimp_gateway_upstream_retries_total{{reason="broken",service="{name}"}}' in metrics


class _NotSent(socketserver.StreamRequestHandler):
    """A sidecar whose model server is gone: every call gets 503 + x-aimp-not-sent."""

    def handle(self) -> None:
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                chunk = self.rfile.readline()
                if not chunk:
                    return
                head += chunk
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            self.rfile.read(length)
            body = b'{"error": "model server gone"}'
            self.wfile.write(
                b"HTTP/1.1 503 Service Unavailable\r\nx-aimp-not-sent: 1\r\nRetry-After: 1\r\n"
                b"content-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )


@pytest.fixture
def not_sent_server() -> Iterator[int]:
    """A real TCP server answering every call 503 + x-aimp-not-sent (see ``_NotSent``)."""
    with tcp_server(_NotSent) as port:
        yield port


def test_a_call_the_sidecar_never_sent_goes_to_another_instance(  # type: ignore[no-untyped-def]
    gateway, register_instance, not_sent_server: int
) -> None:
    """A POST answered 503 + x-aimp-not-sent (model server gone) is resent to a live pod: 200."""
    headers = gateway.auth("notsent-app")
    name, live = _bad_and_live(gateway, register_instance, headers, "notsent", not_sent_server)
    url = f"{gateway.url}/svc/{name}/echo/x"
    with httpx.Client() as http:
        posts = [http.post(url, headers=headers, content=b"1") for _ in range(4)]
    assert [r.status_code for r in posts] == [200] * 4
    assert {r.headers["x-aimp-instance"] for r in posts} == {live}
