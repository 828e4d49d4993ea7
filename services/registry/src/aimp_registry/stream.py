"""The change stream's core: fan-out of store changes to readers, resume, SSE framing.

The store calls :meth:`ChangeHub.publish` synchronously after every change, so a
reader's queue holds the change before the HTTP call that made it has answered.
Each reader has a bounded queue; a reader that falls ``max_queue`` changes behind
is dropped (its stream ends, it reconnects and resumes or gets a snapshot), so a
slow reader never slows the registry or grows its memory without bound.

SSE ids are ``<epoch>-<version>``: the epoch is random per process start, so a
``Last-Event-ID`` from another node or an earlier life of this one (whose
versions mean other changes) is never mistaken for a resume point.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from collections.abc import Sequence
from typing import Any

from aimp_registry import metrics
from aimp_registry.interface import Change

HEARTBEAT = b": heartbeat\n\n"


class Reader:
    """One connected stream reader: its queue of unsent changes and a wake-up."""

    def __init__(self) -> None:
        self.queue: deque[Change] = deque()
        self.wake = asyncio.Event()
        self.dropped = False

    def take(self) -> list[Change]:
        """Everything queued so far, oldest first."""
        items = list(self.queue)
        self.queue.clear()
        return items


class ChangeHub:
    """Fans every store change out to the connected readers."""

    def __init__(self, *, max_queue: int, epoch: str | None = None) -> None:
        self.max_queue = max_queue
        self.epoch = epoch or secrets.token_hex(4)
        self._readers: set[Reader] = set()

    @property
    def readers(self) -> int:
        return len(self._readers)

    def subscribe(self) -> Reader:
        reader = Reader()
        self._readers.add(reader)
        metrics.STREAM_READERS.set(len(self._readers))
        return reader

    def unsubscribe(self, reader: Reader) -> None:
        self._readers.discard(reader)
        metrics.STREAM_READERS.set(len(self._readers))

    def publish(self, change: Change) -> None:
        """Store listener: queue ``change`` for every reader, dropping overflowing ones."""
        for reader in list(self._readers):
            if len(reader.queue) >= self.max_queue:
                self._drop(reader)
                metrics.STREAM_DROPPED.inc()
            else:
                reader.queue.append(change)
                reader.wake.set()

    def close_all(self) -> None:
        """End every stream (the process is stopping; readers move to another node)."""
        for reader in list(self._readers):
            self._drop(reader)

    def _drop(self, reader: Reader) -> None:
        reader.dropped = True
        reader.wake.set()
        self.unsubscribe(reader)

    def event_id(self, version: int) -> str:
        return f"{self.epoch}-{version}"

    def resume_point(self, last_event_id: str | None) -> int | None:
        """The version a ``Last-Event-ID`` of this process names, else None."""
        if not last_event_id:
            return None
        epoch, _, version = last_event_id.strip().rpartition("-")
        if epoch != self.epoch or not version.isdigit():
            return None
        return int(version)


def changes_after(held: Sequence[Change], last: int, current: int) -> list[Change] | None:
    """The changes a reader that has seen everything up to ``last`` is missing.

    ``held`` is the recent-changes window (contiguous versions, oldest first) and
    ``current`` the registry's version. None means the window no longer covers the
    gap (or ``last`` is not a version this registry issued): send a snapshot.
    """
    if last == current:
        return []
    if last > current:
        return None
    missing = [c for c in held if c.version > last]
    if not missing or missing[0].version != last + 1 or missing[-1].version != current:
        return None
    return missing


def sse(event: str, data: dict[str, Any], event_id: str) -> bytes:
    """One server-sent event (compact JSON on a single data line)."""
    payload = json.dumps(data, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event}\ndata: {payload}\n\n".encode()


def change_event(hub: ChangeHub, change: Change) -> bytes:
    return sse(
        "change",
        {"version": change.version, "action": change.action, "instance": change.snapshot},
        hub.event_id(change.version),
    )


def snapshot_event(hub: ChangeHub, version: int, applications: dict[str, Any]) -> bytes:
    """``applications`` is the body of ``GET /eureka/apps`` (``{"applications": ...}``)."""
    return sse(
        "snapshot",
        {"version": version, "epoch": hub.epoch, **applications},
        hub.event_id(version),
    )
