"""Unit tests of the change stream: fan-out, overflow, resume, SSE framing, the live view."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aimp_core.registry_client import RegistryEvent, RegistryView, _SseDecoder, parse_registry_event
from aimp_registry.documents import parse_registration
from aimp_registry.interface import Change
from aimp_registry.model import Status
from aimp_registry.store import InMemoryRegistry
from aimp_registry.stream import ChangeHub, change_event, changes_after, snapshot_event
from aimp_registry.views import full_body


@pytest.fixture
def store(clock: Any) -> InMemoryRegistry:
    return InMemoryRegistry(clock)


@pytest.fixture
def hub(store: InMemoryRegistry) -> ChangeHub:
    hub = ChangeHub(max_queue=3, epoch="e1")
    store.add_listener(hub.publish)
    return hub


def _register(store: InMemoryRegistry, clock: Any, make_body: Any, iid: str) -> None:
    store.register(parse_registration(make_body("iris", iid), "iris", now_ms=clock()))


async def test_every_change_reaches_every_reader_in_order(
    store: InMemoryRegistry, hub: ChangeHub, clock: Any, make_body: Any
) -> None:
    """Register, status, metadata, cancel and eviction are queued to all readers at once."""
    hub.max_queue = 100
    a, b = hub.subscribe(), hub.subscribe()
    _register(store, clock, make_body, "x")
    store.set_status_override("iris", "x", Status.OUT_OF_SERVICE)
    store.update_metadata("iris", "x", {"k": "v"})
    assert a.wake.is_set() and b.wake.is_set()
    _register(store, clock, make_body, "short")
    store.cancel("iris", "x")
    clock.advance(91)
    store.evict_expired()
    expected = [
        (1, "ADDED"),
        (2, "MODIFIED"),
        (3, "MODIFIED"),
        (4, "ADDED"),
        (5, "DELETED"),
        (6, "DELETED"),
    ]
    for reader in (a, b):
        assert [(c.version, c.action) for c in reader.take()] == expected


def test_overflowing_reader_is_dropped_alone(
    store: InMemoryRegistry, hub: ChangeHub, clock: Any, make_body: Any
) -> None:
    """A reader that falls max_queue changes behind is dropped; others keep receiving."""
    slow, fast = hub.subscribe(), hub.subscribe()
    for i in range(3):
        _register(store, clock, make_body, f"i{i}")
        assert len(fast.take()) == 1
    assert hub.readers == 2 and not slow.dropped
    _register(store, clock, make_body, "i3")
    assert slow.dropped and hub.readers == 1
    assert [c.version for c in slow.take()] == [1, 2, 3]  # what it had stays deliverable
    _register(store, clock, make_body, "i4")
    assert [c.version for c in fast.take()] == [4, 5]
    assert slow.queue == type(slow.queue)()


def test_resume_point_needs_this_epoch(hub: ChangeHub) -> None:
    """A Last-Event-ID from another process (epoch) or malformed is not a resume point."""
    assert hub.resume_point("e1-42") == 42
    assert hub.resume_point(hub.event_id(7)) == 7
    assert hub.resume_point("e2-42") is None
    assert hub.resume_point("42") is None
    assert hub.resume_point("e1-x") is None
    assert hub.resume_point(None) is None


def _changes(first: int, last: int) -> list[Change]:
    return [Change(0, "A", str(v), {"actionType": "ADDED"}, v) for v in range(first, last + 1)]


@settings(deadline=None)  # a loaded CI machine must not make it flaky
@given(
    first=st.integers(min_value=1, max_value=50),
    length=st.integers(min_value=0, max_value=50),
    last=st.integers(min_value=0, max_value=120),
)
def test_changes_after_is_exactly_the_gap_or_none(first: int, length: int, last: int) -> None:
    """Resuming yields exactly versions last+1..current when held, else asks for a snapshot."""
    current = first + length - 1 if length else first - 1
    held = _changes(first, current)
    missing = changes_after(held, last, current)
    if last == current:
        assert missing == []
    elif first - 1 <= last < current:
        assert missing is not None
        assert [c.version for c in missing] == list(range(last + 1, current + 1))
    else:
        assert missing is None


async def test_sse_frames_parse_back_with_the_client_decoder(
    store: InMemoryRegistry, hub: ChangeHub, clock: Any, make_body: Any
) -> None:
    """The registry's snapshot and change frames decode into the client's events."""
    _register(store, clock, make_body, "x")
    reader = hub.subscribe()
    store.set_status_override("iris", "x", Status.DOWN)
    raw = snapshot_event(hub, store.version - 1, full_body(store)) + change_event(
        hub, reader.take()[0]
    )
    decoder, events = _SseDecoder(), []
    for line in (raw.decode() + ": heartbeat\n\n").split("\n"):
        frame = decoder.feed(line)
        if frame is not None:
            event = parse_registry_event(*frame)
            assert event is not None
            events.append(event)
    snapshot, change = events
    assert (snapshot.kind, snapshot.version, snapshot.event_id) == ("snapshot", 1, "e1-1")
    assert [i.instance_id for i in snapshot.instances] == ["x"]
    assert (change.kind, change.version, change.action) == ("change", 2, "MODIFIED")
    assert change.instance is not None and change.instance.status == "DOWN"
    assert decoder.last_id == "e1-2"


def test_decoder_joins_multiline_data_and_ignores_comments() -> None:
    """Multi-line data is joined with newlines; comments and unknown fields are skipped."""
    decoder = _SseDecoder()
    frames = [decoder.feed(x) for x in [": c", "event: x", "data: a", "data:b", "retry: 5", ""]]
    assert frames[-1] == ("x", "a\nb", None) and frames[:-1] == [None] * 5


def _inst_event(version: int, action: str, app: str, iid: str, status: str = "UP") -> RegistryEvent:
    doc = {"instanceId": iid, "app": app, "ipAddr": "10.0.0.1", "port": {"$": 80}, "status": status}
    data = {"version": version, "action": action, "instance": doc}
    event = parse_registry_event("change", json.dumps(data), f"e-{version}")
    assert event is not None
    return event


def test_view_applies_snapshot_and_changes() -> None:
    """The live view adds, modifies and deletes instances; services never mutate in place."""
    view = RegistryView(client=None)  # type: ignore[arg-type]
    view.apply(RegistryEvent("snapshot", 3, "e-3", instances=()))
    view.apply(_inst_event(4, "ADDED", "IRIS", "a"))
    view.apply(_inst_event(5, "ADDED", "IRIS", "b"))
    kept = view.services
    view.apply(_inst_event(6, "MODIFIED", "IRIS", "a", status="DOWN"))
    assert [(i.instance_id, i.status) for i in view.services["iris"]] == [
        ("a", "DOWN"),
        ("b", "UP"),
    ]
    assert [i.status for i in kept["iris"]] == ["UP", "UP"]
    view.apply(_inst_event(7, "DELETED", "IRIS", "a"))
    view.apply(_inst_event(8, "DELETED", "IRIS", "b"))
    assert dict(view.services) == {} and view.version == 8 and view.last_event_id == "e-8"


async def test_view_reconnects_after_failures() -> None:
    """A failing stream is retried with backoff, resuming from the last event id."""
    calls: list[str | None] = []

    class FlakyClient:
        async def watch(self, last_event_id: str | None = None, **_: Any) -> Any:
            calls.append(last_event_id)
            if len(calls) == 1:
                yield RegistryEvent("snapshot", 1, "e-1")
                raise ValueError("stream broke")
            if len(calls) == 2:
                raise ValueError("refused")
            yield _inst_event(2, "ADDED", "IRIS", "a")
            await asyncio.sleep(10)

    view = RegistryView(FlakyClient(), backoff_min_s=0.001, backoff_max_s=0.01)  # type: ignore[arg-type]
    view.start()
    try:
        for _ in range(200):
            if "iris" in view.services:
                break
            await asyncio.sleep(0.005)
        assert calls == [None, "e-1", "e-1"]
        assert view.connected and view.version == 2
    finally:
        await view.stop()
