"""Integration: the change stream of a real registry process, read by aimp_core's client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from aimp_core.registry_client import EurekaClient, RegistryEvent, instance_document

from .conftest import RegistryNode

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryNode]:
    """One registry with a 0.3 s stream heartbeat."""
    registry = RegistryNode(
        tmp_path_factory.mktemp("stream-node"), AIMP_REGISTRY_STREAM_HEARTBEAT_S="0.3"
    )
    try:
        yield registry.start()
    finally:
        registry.terminate()


@pytest.fixture
async def client(node: RegistryNode) -> AsyncIterator[EurekaClient]:
    eureka = EurekaClient(node.eureka_url, timeout_s=5)
    yield eureka
    await eureka.aclose()


class Recorder:
    """Follows the stream in the background, timestamping each event."""

    def __init__(self, client: EurekaClient, last_event_id: str | None = None) -> None:
        self.events: list[tuple[float, RegistryEvent]] = []
        self._task = asyncio.create_task(self._run(client, last_event_id))

    async def _run(self, client: EurekaClient, last_event_id: str | None) -> None:
        async for event in client.watch(last_event_id, read_timeout_s=5):
            self.events.append((time.monotonic(), event))

    async def wait_for(self, predicate: Any, timeout_s: float = 3.0) -> tuple[float, RegistryEvent]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, event in self.events:
                if predicate(event):
                    return at, event
            await asyncio.sleep(0.002)
        raise AssertionError(f"no matching event within {timeout_s} s: {self.events[-3:]}")

    async def close(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


def _is(action: str, iid: str, **fields: str) -> Any:
    def match(event: RegistryEvent) -> bool:
        inst = event.instance
        return (
            event.kind == "change"
            and event.action == action
            and inst is not None
            and inst.instance_id == iid
            and all(getattr(inst, k) == v for k, v in fields.items())
        )

    return match


async def test_every_kind_of_change_arrives_within_a_second(client: EurekaClient) -> None:
    """Register, status, metadata, cancel and eviction each reach a stream reader in < 1 s."""
    recorder = Recorder(client)
    try:
        _, snapshot = await recorder.wait_for(lambda e: e.kind == "snapshot")
        doc = instance_document(app="streamed", instance_id="s-1", ip="127.0.0.1", port=9401)
        start = time.monotonic()
        await client.register(doc)
        steps = [(await recorder.wait_for(_is("ADDED", "s-1", status="UP")))[0] - start]
        start = time.monotonic()
        await client.set_status("streamed", "s-1", "OUT_OF_SERVICE")
        at, _ = await recorder.wait_for(_is("MODIFIED", "s-1", status="OUT_OF_SERVICE"))
        steps.append(at - start)
        start = time.monotonic()
        resp = await client._http.put(
            f"{client.base_url}/apps/STREAMED/s-1/metadata", params={"aimp.weight": "7"}
        )
        assert resp.status_code == 200
        at, _ = await recorder.wait_for(
            lambda e: _is("MODIFIED", "s-1")(e) and e.instance.metadata.get("aimp.weight") == "7"
        )
        steps.append(at - start)
        start = time.monotonic()
        await client.cancel("streamed", "s-1")
        steps.append((await recorder.wait_for(_is("DELETED", "s-1")))[0] - start)
        short = instance_document(
            app="streamed", instance_id="s-2", ip="127.0.0.1", port=9402, lease_duration_s=1
        )
        await client.register(short)
        expires = time.monotonic() + 1.0
        at, _ = await recorder.wait_for(_is("DELETED", "s-2"), timeout_s=5)
        steps.append(at - expires)
        assert all(step < 1.0 for step in steps), steps
        versions = [e.version for _, e in recorder.events]
        assert versions == list(range(snapshot.version, snapshot.version + len(versions)))
    finally:
        await recorder.close()


async def test_resume_sends_only_missed_changes(client: EurekaClient) -> None:
    """With its Last-Event-ID a reader gets just the changes it missed; else a snapshot."""
    first = Recorder(client)
    _, snapshot = await first.wait_for(lambda e: e.kind == "snapshot")
    await first.close()
    for i in range(2):
        doc = instance_document(app="resumed", instance_id=f"r-{i}", ip="127.0.0.1", port=9410 + i)
        await client.register(doc)
    resumed = Recorder(client, snapshot.event_id)
    try:
        await resumed.wait_for(_is("ADDED", "r-1"))
        kinds = [(e.kind, e.version) for _, e in resumed.events]
        assert kinds == [("change", snapshot.version + 1), ("change", snapshot.version + 2)]
    finally:
        await resumed.close()
    stranger = Recorder(client, "0000-1")
    try:
        _, event = await stranger.wait_for(lambda e: True)
        assert event.kind == "snapshot"
        assert {"r-0", "r-1"} <= {i.instance_id for i in event.instances}
    finally:
        await stranger.close()
        for i in range(2):
            await client.cancel("resumed", f"r-{i}")


async def test_idle_stream_carries_heartbeats(node: RegistryNode) -> None:
    """An idle stream sends a comment line every heartbeat interval, as text/event-stream."""
    async with (
        httpx.AsyncClient(timeout=5) as http,
        http.stream("GET", f"{node.eureka_url}/stream") as resp,
    ):
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in resp.headers
        lines: list[str] = []
        start = time.monotonic()
        async for line in resp.aiter_lines():
            lines.append(line)
            if lines.count(": heartbeat") == 2:
                break
        assert 0.5 <= time.monotonic() - start < 2.0
        assert lines[1] == "event: snapshot"
