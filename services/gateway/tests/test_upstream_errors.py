"""Upstream failures: refused connections retry another instance, then 502; slow pods 504."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from aimp_core.errors import GatewayTimeout
from aimp_core.net import free_port
from aimp_gateway.upstream import ConnectFailed, Upstream

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
