"""Integration: two and three real registry processes replicating to each other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from aimp_core.net import free_port
from aimp_core.registry_client import EurekaClient, RegistryView, instance_document

from .conftest import RegistryNode

pytestmark = pytest.mark.integration

REPLICATED = {"x-netflix-discovery-replication": "true"}
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RegistryNode]]:
    """Nodes A and B, each listing the other as its peer; A's list also names A itself
    (as a shared peer list in a cluster would)."""
    ports = [free_port(), free_port()]
    peers = [f"http://127.0.0.1:{ports[1]}/eureka,http://127.0.0.1:{ports[0]}/eureka"]
    peers.append(f"http://127.0.0.1:{ports[0]}/eureka")
    nodes = [
        RegistryNode(tmp_path_factory.mktemp(f"peer-{port}"), port, AIMP_REGISTRY_PEERS=peer_list)
        for port, peer_list in zip(ports, peers, strict=True)
    ]
    for node in nodes:
        node.spawn()
    try:
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.terminate()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5, headers=JSON) as client:
        yield client


def _doc(app: str, iid: str, port: int = 9500, **kw: Any) -> dict[str, Any]:
    return instance_document(app=app, instance_id=iid, ip="127.0.0.1", port=port, **kw)


async def _instance(http: httpx.AsyncClient, node: RegistryNode, app: str, iid: str) -> Any:
    resp = await http.get(f"{node.eureka_url}/apps/{app.upper()}/{iid}")
    return resp.json()["instance"] if resp.status_code == 200 else None


async def _until(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 1.0, what: str = "condition"
) -> float:
    """Seconds until ``check`` holds; fails after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(0.005)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


async def test_every_write_on_a_reaches_b_within_a_second(
    pair: list[RegistryNode], http: httpx.AsyncClient
) -> None:
    """Register, status override and removal, metadata and cancel replicate in < 1 s, and
    B's stream readers hear of the replicated registration."""
    a, b = pair

    async def on_b(pred: Callable[[Any], bool]) -> bool:
        return pred(await _instance(http, b, "repl", "r-1"))

    watcher = EurekaClient(b.eureka_url, timeout_s=5)
    view = RegistryView(watcher, read_timeout_s=5)
    view.start()
    try:
        await view.wait_ready(5)
        resp = await http.post(f"{a.eureka_url}/apps/REPL", json=_doc("repl", "r-1"))
        assert resp.status_code == 204

        async def streamed() -> bool:
            return "repl" in view.services

        assert await _until(streamed, what="B's stream hears of A's register") < 1.0
    finally:
        await view.stop()
        await watcher.aclose()
    await _until(lambda: on_b(lambda i: i is not None and i["status"] == "UP"), what="register")
    url = f"{a.eureka_url}/apps/REPL/r-1"
    await http.put(f"{url}/status", params={"value": "OUT_OF_SERVICE"})
    await _until(
        lambda: on_b(lambda i: i["status"] == i["overriddenStatus"] == "OUT_OF_SERVICE"),
        what="status override",
    )
    await http.delete(f"{url}/status")
    await _until(
        lambda: on_b(lambda i: i["overriddenStatus"] == "UNKNOWN"), what="override removal"
    )
    assert (
        await http.post(f"{a.eureka_url}/apps/REPL", json=_doc("repl", "r-1"))
    ).status_code == 204
    await _until(lambda: on_b(lambda i: i["status"] == "UP"), what="re-register")
    await http.put(f"{url}/metadata", params={"aimp.weight": "3"})
    await _until(lambda: on_b(lambda i: i["metadata"].get("aimp.weight") == "3"), what="metadata")
    await http.delete(url)
    await _until(lambda: on_b(lambda i: i is None), what="cancel")
    status = (await http.get(f"{a.eureka_url}/status")).json()
    peer, itself = status["replication"]["peers"]
    assert peer["url"] == b.eureka_url and peer["reachable"] and peer["outcomes"]["ok"] >= 6
    # A's own URL in its peer list is recognised and never sent anything
    assert (itself["url"], itself["self"], itself["outcomes"]) == (a.eureka_url, True, {})


async def test_heartbeats_on_a_keep_the_instance_alive_on_b(
    pair: list[RegistryNode], http: httpx.AsyncClient
) -> None:
    """B never hears from the client, only A's replicated heartbeats, and keeps the lease."""
    a, b = pair
    doc = _doc("alive", "al-1", lease_duration_s=1)
    assert (await http.post(f"{a.eureka_url}/apps/ALIVE", json=doc)).status_code == 204
    for _ in range(6):  # 1.8 s, almost twice the lease
        await asyncio.sleep(0.3)
        assert (await http.put(f"{a.eureka_url}/apps/ALIVE/al-1")).status_code == 200
    assert await _instance(http, b, "alive", "al-1") is not None
    await http.delete(f"{a.eureka_url}/apps/ALIVE/al-1")


async def test_conflicts_are_settled_by_last_dirty_timestamp(
    pair: list[RegistryNode], http: httpx.AsyncClient
) -> None:
    """A peer with a newer copy answers 409 and the sender takes it; one without answers
    404 and the sender registers the instance there again."""
    a, b = pair
    now = int(time.time() * 1000)
    old = _doc("conflict", "c-1", port=9601)
    old["instance"]["lastDirtyTimestamp"] = str(now - 10_000)
    assert (await http.post(f"{a.eureka_url}/apps/CONFLICT", json=old)).status_code == 204
    await _until(lambda: _has(http, b, "conflict", "c-1"), what="first replication")
    newer = _doc("conflict", "c-1", port=9602)
    newer["instance"]["lastDirtyTimestamp"] = str(now)
    resp = await http.post(f"{b.eureka_url}/apps/CONFLICT", json=newer, headers=REPLICATED)
    assert resp.status_code == 204  # B alone holds the newer document (not forwarded)
    assert (await _instance(http, a, "conflict", "c-1"))["port"]["$"] == 9601

    assert (await http.put(f"{a.eureka_url}/apps/CONFLICT/c-1")).status_code == 200

    async def a_took_b_copy() -> bool:
        inst = await _instance(http, a, "conflict", "c-1")
        return bool(inst["port"]["$"] == 9602 and inst["lastDirtyTimestamp"] == str(now))

    await _until(a_took_b_copy, what="409: A takes B's newer copy")

    resp = await http.delete(f"{b.eureka_url}/apps/CONFLICT/c-1", headers=REPLICATED)
    assert resp.status_code == 200 and await _instance(http, a, "conflict", "c-1") is not None
    assert (await http.put(f"{a.eureka_url}/apps/CONFLICT/c-1")).status_code == 200
    await _until(lambda: _has(http, b, "conflict", "c-1"), what="404: A registers again on B")
    assert (await _instance(http, b, "conflict", "c-1"))["port"]["$"] == 9602
    await http.delete(f"{a.eureka_url}/apps/CONFLICT/c-1")


async def _has(http: httpx.AsyncClient, node: RegistryNode, app: str, iid: str) -> bool:
    return await _instance(http, node, app, iid) is not None


async def _ids(http: httpx.AsyncClient, node: RegistryNode) -> set[str]:
    body = (await http.get(f"{node.eureka_url}/apps")).json()["applications"]
    return {i["instanceId"] for app in body["application"] for i in app["instance"]}


async def test_killing_a_node_while_clients_renew_loses_nothing(
    start_nodes: Any, http: httpx.AsyncClient
) -> None:
    """kill -9 A while clients renew to B: nothing is lost on B; A comes back with
    everything at once and B's replicated heartbeats keep A's copies alive."""
    a, b = start_nodes(2)
    ids = {f"k-{i}" for i in range(5)}
    for iid in sorted(ids):
        doc = _doc("killed", iid, lease_duration_s=1)
        assert (await http.post(f"{a.eureka_url}/apps/KILLED", json=doc)).status_code == 204
    await _until(lambda: _subset(http, b, ids), what="replication to B")
    a.kill()

    async def renew_to_b(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for iid in ids:
                resp = await http.put(f"{b.eureka_url}/apps/KILLED/{iid}")
                assert resp.status_code == 200, (iid, resp.text)
            await asyncio.sleep(0.25)

    await renew_to_b(1.5)  # longer than the 1 s lease
    assert ids <= await _ids(http, b)
    a.spawn()
    renewing = asyncio.create_task(renew_to_b(60))
    try:
        await asyncio.to_thread(a.wait_ready)
        assert ids <= await _ids(http, a)  # at once: its own state plus B's
        await asyncio.sleep(1.5)  # beyond A's grace; only B's heartbeats keep A's copies
        assert ids <= await _ids(http, a)
        assert ids <= await _ids(http, b)
    finally:
        renewing.cancel()


async def _subset(http: httpx.AsyncClient, node: RegistryNode, ids: set[str]) -> bool:
    return ids <= await _ids(http, node)


async def test_three_nodes(start_nodes: Any, http: httpx.AsyncClient) -> None:
    """Each of three nodes forwards to both others; losing one loses no registration."""
    a, b, c = start_nodes(3)
    assert (
        await http.post(f"{a.eureka_url}/apps/TRIO", json=_doc("trio", "t-a"))
    ).status_code == 204
    took = await _until(lambda: _all_have(http, [b, c], {"t-a"}), what="A's register on B and C")
    assert took < 1.0
    a.kill()
    assert (
        await http.post(f"{b.eureka_url}/apps/TRIO", json=_doc("trio", "t-b"))
    ).status_code == 204
    await _until(lambda: _all_have(http, [b, c], {"t-a", "t-b"}), what="B's register on C")


async def _all_have(http: httpx.AsyncClient, nodes: list[RegistryNode], ids: set[str]) -> bool:
    for node in nodes:
        if not ids <= await _ids(http, node):
            return False
    return True
