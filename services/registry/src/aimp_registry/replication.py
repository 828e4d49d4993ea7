"""Replication to peer registries, as Eureka peers do it (the HTTP adapter).

Every client-originated write is queued per peer (bounded; a full queue drops the
task and counts it) and replayed by one worker per peer: it takes a batch,
groups it by instance (:func:`aimp_registry.peers.coalesce`), sends the groups
concurrently (each instance's writes in order) with the replication header, and
applies Eureka's answers: 404 to a heartbeat → send the register; 409 → take
the peer's newer copy locally. Nothing here ever blocks a client's call.

A peer that does not answer is probed with one task at most once a second, and
the rest of each batch is dropped meanwhile: when it comes back it syncs from a
peer at start, and heartbeats answered 404 repair whatever it still misses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from aimp_registry import metrics
from aimp_registry.documents import InvalidInstance, parse_registration, render_instance
from aimp_registry.interface import RegistryStore
from aimp_registry.model import Clock
from aimp_registry.peers import (
    REPLICATION_HEADER,
    Action,
    Reaction,
    Task,
    coalesce,
    http_call,
    reaction,
)

log = logging.getLogger(__name__)

#: Longest pause between probes of a peer that does not answer.
PROBE_INTERVAL_S = 1.0
#: First retry delay of a failed call; doubles per attempt.
RETRY_BASE_S = 0.1
#: How often a stopping replicator looks whether its queues are empty.
DRAIN_POLL_S = 0.01


@dataclass
class PeerLink:
    """One peer: its queue and what happened to the calls sent to it."""

    url: str
    queue: asyncio.Queue[Task]
    #: True once the peer turned out to be this very process (then nothing is sent).
    is_self: bool | None = None
    reachable: bool = True
    #: A batch taken from the queue is being sent.
    busy: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, action: Action, outcome: str, amount: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + amount
        metrics.REPLICATION.labels(self.url, action.value, outcome).inc(amount)


@dataclass(frozen=True)
class ReplicationConfig:
    queue_max: int = 50_000
    batch_max: int = 250
    concurrency: int = 16
    timeout_s: float = 2.0
    attempts: int = 3


class Replicator:
    """Forwards local writes to every peer and syncs from one at start."""

    def __init__(
        self,
        peers: list[str],
        store: RegistryStore,
        clock: Clock,
        *,
        node_id: str,
        config: ReplicationConfig | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.node_id = node_id
        self.config = cfg = config or ReplicationConfig()
        self.links = [PeerLink(url, asyncio.Queue(cfg.queue_max)) for url in peers]
        self.synced_from: str | None = None
        self._http = httpx.AsyncClient(
            timeout=cfg.timeout_s,
            headers={REPLICATION_HEADER: "true", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=cfg.concurrency * max(1, len(peers))),
        )
        self._workers: list[asyncio.Task[None]] = []

    # -- client side -------------------------------------------------------------------

    def submit(self, task: Task) -> None:
        """Queue ``task`` for every peer; never waits."""
        for link in self.links:
            if link.is_self:
                continue
            try:
                link.queue.put_nowait(task)
            except asyncio.QueueFull:
                link.count(task.action, "dropped")
            metrics.REPLICATION_QUEUE.labels(link.url).set(link.queue.qsize())

    def register_task(self, app: str, instance_id: str) -> Task | None:
        """A REGISTER task carrying the local copy of the instance, if it still exists."""
        rec = self.store.instance(app, instance_id)
        if rec is None:
            return None
        return Task(
            Action.REGISTER, rec.app, rec.instance_id, body={"instance": render_instance(rec)}
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        for link in self.links:
            self._workers.append(
                asyncio.create_task(self._worker(link), name=f"replicate-{link.url}")
            )

    async def stop(self, drain_s: float = 1.0) -> None:
        """Give queued writes up to ``drain_s`` to reach reachable peers, then stop."""
        for _ in range(int(drain_s / DRAIN_POLL_S)):
            if not any(
                link.reachable and not link.is_self and (link.busy or not link.queue.empty())
                for link in self.links
            ):
                break
            await asyncio.sleep(DRAIN_POLL_S)
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        await self._http.aclose()

    async def sync_from_peers(self, timeout_s: float) -> str | None:
        """Register locally (without forwarding) every instance of the first peer that
        answers; returns its URL, or None when no peer answered."""
        for link in self.links:
            try:
                resp = await self._http.get(f"{link.url}/apps", timeout=timeout_s)
                resp.raise_for_status()
                body = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                log.info(
                    "peer not available for the start-up sync",
                    extra={"peer": link.url, "error": f"{type(exc).__name__}: {exc}"[:200]},
                )
                continue
            count = self._register_all(body)
            self.synced_from = link.url
            log.info("synced from peer", extra={"peer": link.url, "instances": count})
            return link.url
        return None

    def _register_all(self, body: Any) -> int:
        if not isinstance(body, dict) or not isinstance(body.get("applications"), dict):
            log.warning("a peer's registry is not Eureka JSON; nothing synced")
            return 0
        apps = body["applications"].get("application") or []
        count = 0
        for app in apps if isinstance(apps, list) else [apps]:
            items = app.get("instance") or []
            for inst in items if isinstance(items, list) else [items]:
                if self._take({"instance": inst}, str(app.get("name", ""))):
                    count += 1
        return count

    def _take(self, body: Any, app: str) -> bool:
        """Apply a peer's copy of an instance locally (never forwarded)."""
        try:
            reg = parse_registration(body, app, now_ms=self.clock())
        except InvalidInstance as exc:
            log.warning("ignoring a peer's instance", extra={"app": app, "error": exc.detail})
            return False
        self.store.register(reg)
        return True

    # -- peer workers --------------------------------------------------------------------

    async def _worker(self, link: PeerLink) -> None:
        while True:
            batch = [await link.queue.get()]
            while len(batch) < self.config.batch_max and not link.queue.empty():
                batch.append(link.queue.get_nowait())
            metrics.REPLICATION_QUEUE.labels(link.url).set(link.queue.qsize())
            link.busy = True
            try:
                await self._deliver(link, batch)
            finally:
                link.busy = False

    async def _deliver(self, link: PeerLink, batch: list[Task]) -> None:
        if link.is_self is None:
            await self._identify(link)
        if link.is_self:
            return
        if not link.reachable:
            await self._probe(link, batch)
            return
        limit = asyncio.Semaphore(self.config.concurrency)
        await asyncio.gather(*(self._send_group(link, g, limit) for g in coalesce(batch)))

    async def _probe(self, link: PeerLink, batch: list[Task]) -> None:
        """Send the first task only; drop the rest unless the peer answers again."""
        first, rest = batch[0], batch[1:]
        await self._send(link, first, attempts=1)
        if link.reachable:
            log.info("peer answers again; replication resumed", extra={"peer": link.url})
            limit = asyncio.Semaphore(self.config.concurrency)
            await asyncio.gather(*(self._send_group(link, g, limit) for g in coalesce(rest)))
            return
        for task in rest:
            link.count(task.action, "dropped")
        await asyncio.sleep(PROBE_INTERVAL_S)

    async def _identify(self, link: PeerLink) -> None:
        try:
            resp = await self._http.get(f"{link.url}/status")
            link.is_self = resp.is_success and resp.json().get("node_id") == self.node_id
        except (httpx.HTTPError, ValueError, AttributeError):
            return  # unknown yet; asked again with the next batch
        if link.is_self:
            log.info(
                "peer URL is this node itself; not replicating to it", extra={"peer": link.url}
            )

    async def _send_group(
        self, link: PeerLink, group: list[Task], limit: asyncio.Semaphore
    ) -> None:
        async with limit:
            for task in group:
                await self._send(link, task, attempts=self.config.attempts)

    async def _send(self, link: PeerLink, task: Task, *, attempts: int, depth: int = 0) -> None:
        for attempt in range(attempts):
            code, body = await self._call(link, task)
            verdict = reaction(task.action, code)
            if verdict != Reaction.RETRY:
                break
            if attempt + 1 < attempts:
                await asyncio.sleep(RETRY_BASE_S * 2**attempt)
        link.count(task.action, "failed" if verdict == Reaction.RETRY else verdict.value)
        if verdict == Reaction.RETRY and code is None and link.reachable:
            link.reachable = False
            log.warning("peer does not answer; replication paused", extra={"peer": link.url})
        elif code is not None:
            link.reachable = True
        if verdict == Reaction.RESEND_REGISTER and depth == 0:
            register = self.register_task(task.app, task.instance_id)
            if register is not None:
                await self._send(link, register, attempts=attempts, depth=1)
        elif verdict == Reaction.TAKE_PEERS_COPY and isinstance(body, dict):
            self._take(body, task.app)

    async def _call(self, link: PeerLink, task: Task) -> tuple[int | None, Any]:
        call = http_call(task)
        try:
            resp = await self._http.request(
                call.method, f"{link.url}{call.path}", params=call.params, json=call.json
            )
        except httpx.HTTPError:
            return None, None
        body: Any = None
        if resp.status_code == 409:
            with contextlib.suppress(ValueError):
                body = resp.json()
        return resp.status_code, body
