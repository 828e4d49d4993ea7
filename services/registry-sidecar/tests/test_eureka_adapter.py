"""Integration tests: the py-eureka-client registration adapter against the real registry."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from py_eureka_client import http_client

from aimp_core.net import free_port
from aimp_registry_sidecar.eureka_adapter import (
    EurekaRegistration,
    InstanceInfo,
    without_credentials,
)
from aimp_registry_sidecar.registration import RegistryUnreachable

pytestmark = pytest.mark.integration


def _info() -> InstanceInfo:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    return InstanceInfo(
        service=service,
        instance_id=f"host:{service}:9100",
        ip="127.0.0.1",
        port=9100,
        renewal_interval_s=10,
        lease_duration_s=30,
        metadata={"aimp.revision": "r7", "aimp.runtime": "triton", "aimp.model": service},
    )


async def _entry(registry_url: str, info: InstanceInfo) -> dict[str, Any] | None:
    """The registry's JSON for the instance, or None when it does not know it."""
    async with httpx.AsyncClient(timeout=5, headers={"Accept": "application/json"}) as http:
        resp = await http.get(f"{registry_url}/apps/{info.app}/{info.instance_id}")
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    instance: dict[str, Any] = resp.json()["instance"]
    return instance


@pytest.fixture
async def registration(registry_url: str) -> AsyncIterator[EurekaRegistration]:
    reg = EurekaRegistration(registry_url, _info(), timeout_s=5)
    reg.start()
    yield reg
    await reg.aclose()


async def test_register_renew_status_cancel(
    registry_url: str, registration: EurekaRegistration
) -> None:
    """Each call shows in the real registry: document and metadata, status, heartbeat, removal."""
    info = registration.info
    await registration.register("STARTING")
    entry = await _entry(registry_url, info)
    assert entry is not None and entry["status"] == "STARTING"
    assert entry["app"] == info.app and entry["ipAddr"] == "127.0.0.1"
    assert entry["port"]["$"] == 9100
    assert entry["healthCheckUrl"] == "http://127.0.0.1:9100/readyz"
    assert entry["leaseInfo"]["durationInSecs"] == 30
    assert {k: v for k, v in entry["metadata"].items() if k.startswith("aimp.")} == info.metadata

    await registration.register("UP")
    entry = await _entry(registry_url, info)
    assert entry is not None and entry["status"] == "UP"
    renewed_before = entry["leaseInfo"]["lastRenewalTimestamp"]
    await asyncio.sleep(0.002)  # a millisecond clock must move
    assert await registration.renew("UP") is True
    entry = await _entry(registry_url, info)
    assert entry is not None and entry["leaseInfo"]["lastRenewalTimestamp"] > renewed_before

    await registration.set_status("OUT_OF_SERVICE")
    entry = await _entry(registry_url, info)
    assert entry is not None and entry["status"] == "OUT_OF_SERVICE"

    await registration.cancel()
    assert await _entry(registry_url, info) is None
    await registration.cancel()  # already gone: not an error
    assert await registration.renew("UP") is False  # the registry forgot it: register again
    await registration.register("UP")
    entry = await _entry(registry_url, info)
    assert entry is not None and entry["status"] == "UP"
    await registration.cancel()


async def test_unreachable_registry_fails_promptly() -> None:
    """An unreachable registry raises RegistryUnreachable promptly, naming the registry."""
    url = f"http://127.0.0.1:{free_port()}/eureka"
    reg = EurekaRegistration(url, _info(), timeout_s=2)
    reg.start()
    try:
        started = time.monotonic()
        for call in (reg.register("UP"), reg.renew("UP"), reg.set_status("DOWN"), reg.cancel()):
            with pytest.raises(RegistryUnreachable, match=url):
                await call
        assert time.monotonic() - started < 2
    finally:
        await reg.aclose()


async def test_error_answer_is_unreachable_not_forgotten(
    registry_url: str, registration: EurekaRegistration
) -> None:
    """A status change for an instance the registry lacks is a failure (HTTP 404 named)."""
    with pytest.raises(RegistryUnreachable, match="HTTP 404"):
        await registration.set_status("OUT_OF_SERVICE")


async def test_library_http_client_is_restored(registry_url: str) -> None:
    """The adapter plugs its pooled client into py-eureka-client and puts the old one back."""
    before = http_client.http_client
    reg = EurekaRegistration(registry_url, _info(), timeout_s=5)
    reg.start()
    assert http_client.http_client is not before
    await reg.aclose()
    assert http_client.http_client is before


def test_registry_credentials_never_reach_messages() -> None:
    """A basic-auth password in the registry URL is masked wherever the URL is shown."""
    assert (
        without_credentials("http://eureka:s3cret@reg.example:8761/eureka")
        == "http://***@reg.example:8761/eureka"
    )
    assert without_credentials("http://127.0.0.1:8761/eureka") == "http://127.0.0.1:8761/eureka"


async def test_failure_message_masks_credentials() -> None:
    """An unreachable registry given with credentials is reported without them."""
    url = f"http://admin:s3cret@127.0.0.1:{free_port()}/eureka"
    reg = EurekaRegistration(url, _info(), timeout_s=2)
    reg.start()
    try:
        with pytest.raises(RegistryUnreachable) as failure:
            await reg.register("UP")
        assert "s3cret" not in str(failure.value) and "***@127.0.0.1" in str(failure.value)
    finally:
        await reg.aclose()
