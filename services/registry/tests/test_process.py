"""Integration: the registry as a real process, driven by real Eureka clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from py_eureka_client import eureka_basic
from py_eureka_client.eureka_client import EurekaClient as PyEurekaClient

from aimp_core.net import free_port, wait_http_ok
from aimp_core.registry_client import EurekaClient, instance_document

pytestmark = pytest.mark.integration


def _py_client(url: str, app: str, port: int) -> PyEurekaClient:
    # A 60 s interval keeps py-eureka-client's own heartbeat thread asleep for the whole
    # test (stop() cancels it before it fires); the test drives each call itself.
    return PyEurekaClient(
        eureka_server=url,
        app_name=app,
        instance_ip="127.0.0.1",
        instance_host="localhost",
        instance_port=port,
        renewal_interval_in_secs=60,
        duration_in_secs=90,
        metadata={"aimp.revision": "r1"},
    )


async def _status_of(url: str, app: str, instance_id: str) -> str:
    instance = await eureka_basic.get_app_instance(url, app, instance_id)
    return str(instance.status)


# py-eureka-client logs a refused heartbeat with the deprecated Logger.warn.
@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")
async def test_py_eureka_client_lifecycle(registry_process: Any) -> None:
    """py-eureka-client registers, renews, discovers, changes status and cancels."""
    url = registry_process.eureka_url
    client = _py_client(url, "pyiris", 9101)
    instance_id = "127.0.0.1:pyiris:9101"
    await client.start()
    try:
        # discovery: the client's own full fetch (XML) already sees itself
        mine = client.applications.get_application("PYIRIS")
        assert [i.instanceId for i in mine.instances] == [instance_id]
        assert mine.instances[0].metadata["aimp.revision"] == "r1"
        assert mine.instances[0].port.port == 9101
        # renew: a heartbeat moves lastRenewalTimestamp
        before = (await eureka_basic.get_app_instance(url, "PYIRIS", instance_id)).leaseInfo
        await asyncio.sleep(0.01)
        await client.send_heartbeat()
        after = (await eureka_basic.get_app_instance(url, "PYIRIS", instance_id)).leaseInfo
        assert after.lastRenewalTimestamp > before.lastRenewalTimestamp
        # status: OUT_OF_SERVICE is visible in the full registry and in the delta
        await client.status_update("OUT_OF_SERVICE")
        assert await _status_of(url, "PYIRIS", instance_id) == "OUT_OF_SERVICE"
        delta = await eureka_basic.get_delta(url)
        changed = delta.get_application("PYIRIS").instances
        assert [(i.instanceId, i.actionType) for i in changed][-1] == (instance_id, "MODIFIED")
        apps = await eureka_basic.get_applications(url)
        assert "OUT_OF_SERVICE_" in apps.appsHashcode
        # removing the override: the next heartbeat is refused, the client re-registers UP
        await client.delete_status_override()
        await client.send_heartbeat()
        assert await _status_of(url, "PYIRIS", instance_id) == "UP"
    finally:
        await client.stop()  # registers DOWN, then cancels
    apps = await eureka_basic.get_applications(url)
    assert apps.get_application("PYIRIS").instances == []


async def test_py_eureka_client_hash_matches_server(registry_process: Any) -> None:
    """The server's apps__hashcode equals the hash py-eureka-client computes locally."""
    url = registry_process.eureka_url
    client = _py_client(url, "pyhash", 9102)
    await client.start()
    try:
        apps = await eureka_basic.get_applications(url)
        counts: dict[str, int] = {}
        for app in apps.applications:
            for inst in app.instances:
                counts[inst.status] = counts.get(inst.status, 0) + 1
        local = "".join(f"{s}_{counts[s]}_" for s in sorted(counts))
        assert apps.appsHashcode == local
    finally:
        await client.stop()


async def test_aimp_core_client_lifecycle(registry_process: Any) -> None:
    """aimp_core's EurekaClient registers, renews, reads, sets status and cancels."""
    client = EurekaClient(registry_process.eureka_url, timeout_s=5)
    try:
        doc = instance_document(
            app="coreiris",
            instance_id="coreiris-1",
            ip="127.0.0.1",
            port=9201,
            metadata={"aimp.runtime": "triton"},
        )
        await client.register(doc)
        assert await client.renew("coreiris", "coreiris-1") is True
        found = [i for i in await client.applications() if i.app == "COREIRIS"]
        assert [(i.instance_id, i.port, i.status) for i in found] == [("coreiris-1", 9201, "UP")]
        assert found[0].metadata == {"aimp.runtime": "triton"}
        await client.set_status("coreiris", "coreiris-1", "OUT_OF_SERVICE")
        found = [i for i in await client.applications() if i.app == "COREIRIS"]
        assert found[0].status == "OUT_OF_SERVICE"
        await client.cancel("coreiris", "coreiris-1")
        assert await client.renew("coreiris", "coreiris-1") is False
        assert not [i for i in await client.applications() if i.app == "COREIRIS"]
    finally:
        await client.aclose()


async def test_expired_lease_is_evicted_within_a_second(registry_process: Any) -> None:
    """An instance with a 1 s lease that stops renewing is gone about a second later."""
    client = EurekaClient(registry_process.eureka_url, timeout_s=5)
    try:
        doc = instance_document(
            app="evictme", instance_id="e-1", ip="127.0.0.1", port=9301, lease_duration_s=1
        )
        await client.register(doc)
        registered = time.monotonic()
        gone_after = None
        while time.monotonic() - registered < 5:
            if not [i for i in await client.applications() if i.app == "EVICTME"]:
                gone_after = time.monotonic() - registered
                break
            await asyncio.sleep(0.05)
        assert gone_after is not None, "instance was never evicted"
        assert 1.0 <= gone_after <= 2.5  # lease 1 s + at most one 1 s sweep
    finally:
        await client.aclose()


def test_process_logs_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The console script logs JSON lines and, on SIGTERM, shuts down gracefully and exits."""
    port = free_port()
    env = {**os.environ, "AIMP_REGISTRY_PORT": str(port), "AIMP_HOME": str(tmp_path)}
    exe = Path(sys.executable).parent / "aimp-registry"
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout_s=20)
        assert httpx.get(f"http://127.0.0.1:{port}/eureka/apps", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    # uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean stop.
    assert proc.returncode in (0, -signal.SIGTERM)
    records = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert any(r.get("message") == "stopped" and r.get("service") == "registry" for r in records)
