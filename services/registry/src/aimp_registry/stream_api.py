"""``GET /eureka/stream`` (server-sent events of every change) and ``GET /eureka/status``.

On connect a reader gets an event ``snapshot`` (``{"version", "epoch",
"applications"}``, the same applications as ``GET /eureka/apps``), then one
event ``change`` per change (``{"version", "action", "instance"}``). With a
``Last-Event-ID`` this node issued, and while the recent-changes window still
covers the gap, it gets only the changes it missed instead of a snapshot. An idle
stream carries a comment line every ``registry_stream_heartbeat_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.responses import StreamingResponse

from aimp_registry.deps import HubDep, StoreDep
from aimp_registry.stream import (
    HEARTBEAT,
    ChangeHub,
    Reader,
    change_event,
    changes_after,
    snapshot_event,
)
from aimp_registry.views import full_body

router = APIRouter(prefix="/eureka", tags=["aimp extensions"])

LastEventId = Annotated[str | None, Header(alias="last-event-id")]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get("/stream", summary="Server-sent events: a snapshot, then every change")
async def stream(
    request: Request, store: StoreDep, hub: HubDep, last_event_id: LastEventId = None
) -> StreamingResponse:
    # Subscribing and reading the registry happen in one step of the event loop, so the
    # queue holds exactly the changes after the snapshot (or after the resumed ones).
    reader = hub.subscribe()
    last = hub.resume_point(last_event_id)
    missed = None if last is None else changes_after(store.recent_changes(), last, store.version)
    if missed is None:
        first = snapshot_event(hub, store.version, full_body(store))
    else:
        first = b"".join(change_event(hub, c) for c in missed) or b": resumed\n\n"
    heartbeat_s: float = request.app.state.settings.registry_stream_heartbeat_s
    return StreamingResponse(
        _events(hub, reader, first, heartbeat_s),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _events(
    hub: ChangeHub, reader: Reader, first: bytes, heartbeat_s: float
) -> AsyncIterator[bytes]:
    try:
        yield first
        while True:
            reader.wake.clear()
            items = reader.take()
            if items:
                yield b"".join(change_event(hub, c) for c in items)
                continue
            if reader.dropped:
                return
            try:
                await asyncio.wait_for(reader.wake.wait(), heartbeat_s)
            except TimeoutError:
                yield HEARTBEAT
    finally:
        hub.unsubscribe(reader)


@router.get("/status", summary="This node: version, self-preservation, peers, persistence")
async def status(request: Request, store: StoreDep, hub: HubDep) -> dict[str, Any]:
    state = request.app.state
    preservation = state.evictor.state
    replicator = state.replicator
    writer = state.writer
    return {
        "node_id": hub.epoch,
        "version": store.version,
        "instances": store.size(),
        "stream_readers": hub.readers,
        "self_preservation": {
            "enabled": preservation.enabled,
            "active": preservation.active,
            "renewals_last_window": preservation.renewals,
            "expected_renewals": round(preservation.expected_renewals, 3),
            "threshold": round(preservation.threshold, 3),
            "mature_instances": preservation.mature_instances,
            "window_s": state.evictor.config.window_s,
        },
        "persistence": None
        if writer is None
        else {
            "persisted_version": writer.persisted_version,
            "pending": writer.pending,
            "failures": writer.failures,
        },
        "replication": {
            "synced_from": None if replicator is None else replicator.synced_from,
            "peers": []
            if replicator is None
            else [
                {
                    "url": link.url,
                    "self": bool(link.is_self),
                    "reachable": link.reachable,
                    "queued": link.queue.qsize(),
                    "outcomes": dict(link.counts),
                }
                for link in replicator.links
            ],
        },
    }
