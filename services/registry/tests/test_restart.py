"""Integration: the only registry node is killed or stopped and started again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from aimp_core.registry_client import EurekaClient, RegistryView, instance_document

from .conftest import RegistryNode

pytestmark = pytest.mark.integration


def _ids(node: RegistryNode) -> dict[str, dict[str, object]]:
    body = httpx.get(node.eureka_url + "/apps", headers={"Accept": "application/json"}, timeout=5)
    apps = body.json()["applications"]["application"]
    return {i["instanceId"]: i for app in apps for i in app["instance"]}


async def test_restart_brings_back_every_instance_at_once(tmp_path: Path) -> None:
    """20 instances survive kill -9 and SIGTERM: all are listed as soon as the node answers,
    with their overrides and metadata, and a stream reader catches up by itself."""
    node = RegistryNode(tmp_path)
    node.start()
    client = EurekaClient(node.eureka_url, timeout_s=5)
    view = RegistryView(client, backoff_min_s=0.02, backoff_max_s=0.2, read_timeout_s=5)
    try:
        for i in range(20):
            doc = instance_document(
                app="survivor", instance_id=f"s-{i}", ip="127.0.0.1", port=9700 + i,
                metadata={"aimp.revision": f"r{i}"},
            )  # fmt: skip
            await client.register(doc)
        await client.set_status("survivor", "s-3", "OUT_OF_SERVICE")
        view.start()
        await view.wait_ready(5)
        deadline = time.monotonic() + 2
        while node.status()["persistence"]["persisted_version"] < 21:
            assert time.monotonic() < deadline, node.status()
            await asyncio.sleep(0.01)

        node.kill()
        node.spawn()
        await asyncio.to_thread(node.wait_ready)
        listed = _ids(node)  # the very first read after the restart
        assert sorted(listed) == sorted(f"s-{i}" for i in range(20))
        assert listed["s-3"]["status"] == listed["s-3"]["overriddenStatus"] == "OUT_OF_SERVICE"
        assert listed["s-7"]["metadata"] == {"aimp.revision": "r7"}
        assert await client.renew("survivor", "s-0")  # the lease is live, no 404

        # a change just before a graceful stop is written on the way out
        await client.cancel("survivor", "s-19")
        start = time.monotonic()
        assert node.terminate() in (0, -15)
        assert time.monotonic() - start < 5  # open streams do not hold the shutdown
        node.spawn()
        await asyncio.to_thread(node.wait_ready)
        assert len(_ids(node)) == 19
        for _ in range(200):  # the view reconnects and resynchronises by itself
            if len(view.services.get("survivor", ())) == 19:
                break
            await asyncio.sleep(0.02)
        assert len(view.services["survivor"]) == 19
    finally:
        await view.stop()
        await client.aclose()
        node.terminate()
