"""EventPublisher: Kafka events that never block a call and are not lost in an outage.

:class:`EventPublisher`'s ``publish`` only appends to a bounded in-memory queue
(no I/O, no encoding: the value is encoded later, so it must not be changed
after the call). One background task sends what is queued in order, as one
batch per partition per round (``send_batch``: ~3 us an event, against ~10 us
for a ``send`` per event), waiting ``linger_s`` between rounds that are not full.

When Kafka is unreachable, the queue spills to a disk spool (optional:
``spool_dir``, see :mod:`aimp_core.spool`), and a batch that failed goes back
in front; when Kafka answers again the spool is replayed, oldest first, before
newer events. The spool also takes the queue's overflow and, at ``stop``, what
could not be sent, so the next start sends it. Without a spool, events wait in
memory (``max_queue``; beyond it the oldest are dropped and counted).

A broker restart with memory storage (Tansu) loses even acknowledged events the
consumers have not read. The publisher therefore keeps what it sent in the last
``retain_acked_s`` (at most ``retain_acked_max`` events) and sends it again
when it learns the broker went away (:class:`~aimp_core.broker_watch.BrokerWatch`,
or a partition's offsets going backwards, or its partition count changing);
topics are re-created (:func:`ensure_topics`) before sending on each new
connection. Consumers deduplicate by ``event_id``, so the effect is exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from prometheus_client import Counter, Gauge

from .ack_ledger import Ack, AckLedger
from .broker_watch import BrokerWatch
from .kafka_topics import ensure_topics
from .spool import Mark, Record, Spool, SpoolLocked

log = logging.getLogger(__name__)

EVENTS_SENT = Counter("aimp_events_sent_total", "Events delivered to Kafka.", ["topic"])
EVENTS_DROPPED = Counter(
    "aimp_events_dropped_total", "Events dropped because the publish queue was full.", ["topic"]
)
QUEUE_DEPTH = Gauge("aimp_events_queued", "Events waiting to be sent to Kafka.")
SPOOLED = Counter("aimp_events_spooled_total", "Events written to the disk spool.")
SPOOL_REJECTED = Counter(
    "aimp_events_spool_rejected_total", "Events dropped because the disk spool was full."
)
SPOOL_RECORDS = Gauge("aimp_events_spool_records", "Events in the disk spool.")
SPOOL_BYTES = Gauge("aimp_events_spool_bytes", "Bytes of the disk spool's files.")
REPLAYED = Counter(
    "aimp_events_resent_total", "Events sent again after a broker lost them.", ["topic"]
)

#: Largest record batch sent to one partition (Kafka's default message.max.bytes is ~1 MB).
_MAX_BATCH_BYTES = 512 * 1024
Queued = tuple[str, str, Mapping[str, Any] | bytes]


def _encode(item: Queued) -> Record:
    topic, key, value = item
    if not isinstance(value, bytes):
        value = json.dumps(value, separators=(",", ":")).encode()
    return topic, key.encode(), value


class EventPublisher:
    """Non-blocking, batching Kafka publisher; spools to disk and replays after outages."""

    def __init__(
        self,
        bootstrap: str,
        *,
        max_queue: int = 100_000,
        batch_size: int = 1_000,
        linger_s: float = 0.05,
        request_timeout_s: float = 5.0,
        retry_backoff_s: float = 0.5,
        retry_backoff_max_s: float = 5.0,
        spool_dir: Path | str | None = None,
        spool_max_bytes: int = 1 << 30,
        spool_fsync: bool = True,
        retain_acked_s: float = 30.0,
        retain_acked_max: int = 50_000,
        topic_partitions: int = 3,
        watch_broker: bool = True,
    ) -> None:
        self.bootstrap = bootstrap
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.request_timeout_s = request_timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        self.spool_max_bytes = spool_max_bytes
        self.spool_fsync = spool_fsync
        self.topic_partitions = topic_partitions
        self._queue: deque[Queued] = deque()
        self._wake = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._spool: Spool | None = None
        self._retry: list[Record] = []  # a failed batch, when there is no spool
        self._resend: deque[Record] = deque()  # acknowledged events a broker lost
        self._inflight: list[Record] = []
        self._inflight_from_spool = False
        self._ledger = AckLedger(retain_acked_s, retain_acked_max)
        self._ensured: set[str] = set()  # topics ensured on the current connection
        self._partition_cache: dict[tuple[bytes, int], int] = {}
        self._broker_lost = False
        self._backoff_s = retry_backoff_s
        self._next_connect = 0.0
        self._last_round = 0.0
        self._spool_full = False
        self._watch = (
            BrokerWatch(bootstrap, self._on_broker_lost, on_up=self._on_broker_up)
            if watch_broker
            else None
        )

    # -- the caller's side ------------------------------------------------------------

    def publish(self, topic: str, key: str, value: Mapping[str, Any] | bytes) -> None:
        """Enqueue one event; returns at once whatever the broker's state.

        ``value`` (a JSON-able mapping, or bytes sent as they are) is encoded later by
        the sender, so the caller must not change it afterwards.
        """
        queue = self._queue
        if len(queue) >= self.max_queue:
            EVENTS_DROPPED.labels(queue.popleft()[0]).inc()
        queue.append((topic, key, value))
        if len(queue) >= self.batch_size and not self._wake.is_set():
            self._wake.set()

    @property
    def pending(self) -> int:
        """Events not yet delivered to Kafka (in memory, in flight or in the spool)."""
        spooled = self._spool.records if self._spool is not None else 0
        inflight = 0 if self._inflight_from_spool else len(self._inflight)
        return len(self._queue) + len(self._retry) + len(self._resend) + inflight + spooled

    async def start(self) -> None:
        if self.spool_dir is not None:
            self._spool = await asyncio.to_thread(self._open_spool, self.spool_dir)
        if self._watch is not None:
            self._watch.start()
        self._task = asyncio.create_task(self._run(), name="event-publisher")

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Send what is queued within the timeout, spool the rest (if spooling), then close."""
        self._stop_requested.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), flush_timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._watch is not None:
            await self._watch.stop()
        await self._close_producer()
        inflight = [] if self._inflight_from_spool else self._inflight
        left = [*inflight, *self._retry, *self._resend]
        self._inflight, self._retry = [], []
        self._resend.clear()
        if self._spool is not None:
            kept = await asyncio.to_thread(self._spool.prepend, left)
            self._count_spooled(kept, len(left))
            await self._spill()
            await asyncio.to_thread(self._spool.close)
            self._update_gauges()
            if self._spool.records:
                log.info("event publisher stopped; %d events spooled", self._spool.records)
        elif self.pending or left:
            log.warning("event publisher stopped with %d events unsent", self.pending + len(left))
            self._queue.clear()

    # -- the sender -------------------------------------------------------------------

    @property
    def _stopping(self) -> bool:
        return self._stop_requested.is_set()

    async def _run(self) -> None:
        while True:
            if self._broker_lost:
                await self._after_broker_lost()
            if not self._has_work():
                if self._stopping:
                    return
                await self._wait(self.linger_s)
                continue
            if self._producer is None and not await self._reconnect():
                if self._spool is not None:
                    await self._spill()  # keep the outage's events on disk, in order
                    if self._stopping:
                        return  # everything is on disk; the next start sends it
                await self._wait(
                    min(self.linger_s, self._next_connect - time.monotonic()), stop_only=True
                )
                continue
            if not self._round_is_due():
                await self._wait(self._last_round + self.linger_s - time.monotonic())
            await self._send_one_round()
            self._update_gauges()

    def _has_work(self) -> bool:
        spooled = self._spool is not None and self._spool.records > 0
        return bool(self._queue or self._retry or self._resend or spooled)

    def _round_is_due(self) -> bool:
        """Send now if a full batch waits or linger_s passed since the last round."""
        if self._stopping or self._retry or self._resend:
            return True
        if self._spool is not None and self._spool.records:
            return True
        due = time.monotonic() >= self._last_round + self.linger_s
        return due or len(self._queue) >= self.batch_size

    async def _wait(self, seconds: float, *, stop_only: bool = False) -> None:
        if seconds <= 0:
            return
        event = self._stop_requested if stop_only else self._wake
        if not stop_only:
            event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    async def _send_one_round(self) -> None:
        self._last_round = time.monotonic()
        mark: Mark | None = None
        source = "queue"
        if self._resend:
            source = "resend"
            n = min(self.batch_size, len(self._resend))
            batch = [self._resend.popleft() for _ in range(n)]
        elif self._retry:
            source, batch, self._retry = "retry", self._retry, []
        elif self._spool is not None and self._spool.records:
            source = "spool"
            batch, mark = await asyncio.to_thread(self._spool.read, self.batch_size)
        else:
            n = min(self.batch_size, len(self._queue))
            batch = [_encode(self._queue.popleft()) for _ in range(n)]
        if not batch:
            return
        self._inflight, self._inflight_from_spool = batch, source == "spool"
        try:
            assert self._producer is not None
            acks = await asyncio.wait_for(self._send(self._producer, batch), self.request_timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:
            self._inflight = []
            await self._put_back(source, batch)
            log.warning(
                "kafka unavailable, %d events kept for retry: %s: %s",
                self.pending,
                type(exc).__name__,
                exc,
            )
            await self._close_producer()
            self._next_connect = time.monotonic() + self._backoff_s
            return
        self._inflight = []
        if mark is not None and self._spool is not None:
            await asyncio.to_thread(self._spool.ack, mark)
        self._backoff_s = self.retry_backoff_s
        if self._ledger.acked(batch, acks, time.monotonic()):
            log.warning("a partition's offsets went backwards: the broker lost its log")
            self._broker_lost = True
        counter = REPLAYED if source == "resend" else EVENTS_SENT
        for topic, n in Tally(record[0] for record in batch).items():
            counter.labels(topic).inc(n)
        if self._spool is not None and len(self._queue) > self.max_queue // 2:
            await self._spill()  # the broker is slower than the callers: keep memory bounded

    async def _put_back(self, source: str, batch: list[Record]) -> None:
        if source == "resend":
            self._resend.extendleft(reversed(batch))
        elif source == "spool":
            pass  # not acked: the next read returns the same records
        elif self._spool is not None:
            kept = await asyncio.to_thread(self._spool.prepend, batch)
            self._count_spooled(kept, len(batch))
        else:
            self._retry = batch

    async def _send(self, producer: AIOKafkaProducer, batch: list[Record]) -> list[Ack]:
        """Send ``batch`` as one record batch per partition (order kept within each)."""
        builders: dict[tuple[str, int], Any] = {}
        counts: dict[tuple[str, int], int] = {}
        futures: list[tuple[tuple[str, int], int, Any]] = []
        parts: dict[str, list[int]] = {}
        for topic, key, value in batch:
            if topic not in parts:
                parts[topic] = await self._partitions(producer, topic)
            tp = (topic, self._partition(key, parts[topic]))
            builder = builders.get(tp)
            if builder is None or builder.append(key=key, value=value, timestamp=None) is None:
                if builder is not None:  # full: send it and start another
                    builder.close()
                    futures.append(
                        (tp, counts[tp], await producer.send_batch(builder, tp[0], partition=tp[1]))
                    )
                builder = builders[tp] = producer.create_batch()
                builder.append(key=key, value=value, timestamp=None)
                counts[tp] = 0
            counts[tp] += 1
        for tp, builder in builders.items():
            builder.close()
            futures.append(
                (tp, counts[tp], await producer.send_batch(builder, tp[0], partition=tp[1]))
            )
        metas = await asyncio.gather(*(f for _, _, f in futures))
        return [(tp, n, meta.offset) for (tp, n, _), meta in zip(futures, metas, strict=True)]

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        if topic not in self._ensured:  # first use on this connection: the broker may be new
            await ensure_topics(
                self.bootstrap,
                [topic],
                partitions=self.topic_partitions,
                timeout_s=self.request_timeout_s,
            )
            self._ensured.add(topic)
        parts = sorted(await producer.partitions_for(topic))
        if self._ledger.partition_count(topic, len(parts)):
            log.warning("topic %s now has %d partitions: it was re-created", topic, len(parts))
            self._broker_lost = True
        return parts

    def _partition(self, key: bytes, partitions: list[int]) -> int:
        """Kafka's default partitioner (murmur2 of the key), cached per key."""
        cache_key = (key, len(partitions))
        found = self._partition_cache.get(cache_key)
        if found is None:
            if len(self._partition_cache) > 10_000:
                self._partition_cache.clear()
            found = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            self._partition_cache[cache_key] = found
        return found

    async def _after_broker_lost(self) -> None:
        """Queue what the broker acknowledged recently for sending again, on a new connection."""
        self._broker_lost = False
        lost = self._ledger.take_lost(time.monotonic())
        self._resend.extendleft(reversed(lost))
        if lost:
            log.warning("kafka broker lost its log: %d recent events will be sent again", len(lost))
        await self._close_producer()

    def _on_broker_lost(self) -> None:
        self._broker_lost = True
        self._wake.set()

    def _on_broker_up(self) -> None:
        """The broker answers again: end the backoff so the outage ends within linger_s."""
        self._next_connect = 0.0
        self._backoff_s = self.retry_backoff_s

    # -- connection and spool ---------------------------------------------------------

    async def _reconnect(self) -> bool:
        """Start a producer if the backoff allows; False while Kafka does not answer."""
        if time.monotonic() < self._next_connect:
            return False
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            request_timeout_ms=int(self.request_timeout_s * 1000),
            acks="all",
            max_batch_size=_MAX_BATCH_BYTES,
            linger_ms=0,
        )
        try:
            await asyncio.wait_for(producer.start(), self.request_timeout_s)
        except (KafkaError, TimeoutError, OSError) as exc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.request_timeout_s)
            self._next_connect = time.monotonic() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, self.retry_backoff_max_s)
            log.warning(
                "kafka unreachable at %s, %d events waiting: %s: %s",
                self.bootstrap,
                self.pending,
                type(exc).__name__,
                exc,
            )
            return False
        self._producer = producer
        self._ensured.clear()
        return True

    async def _close_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), self.request_timeout_s)

    async def _spill(self) -> None:
        """Move the in-memory queue to the end of the spool, in order."""
        if self._spool is None or not self._queue:
            return
        batch = [_encode(self._queue.popleft()) for _ in range(len(self._queue))]
        kept = await asyncio.to_thread(self._spool.append, batch)
        self._count_spooled(kept, len(batch))
        self._update_gauges()

    def _count_spooled(self, kept: int, offered: int) -> None:
        SPOOLED.inc(kept)
        if kept < offered:
            SPOOL_REJECTED.inc(offered - kept)
            if not self._spool_full:
                log.error(
                    "event spool %s is full (%d bytes): dropping events until Kafka is back",
                    self.spool_dir,
                    self.spool_max_bytes,
                )
            self._spool_full = True
        elif self._spool_full and offered:
            log.warning("event spool %s has room again", self.spool_dir)
            self._spool_full = False

    def _open_spool(self, directory: Path) -> Spool:
        try:
            return Spool(directory, max_bytes=self.spool_max_bytes, fsync=self.spool_fsync).open()
        except SpoolLocked:
            own = directory.with_name(f"{directory.name}.{id(self):x}")
            log.warning("spool %s is in use by another process; using %s", directory, own)
            return Spool(own, max_bytes=self.spool_max_bytes, fsync=self.spool_fsync).open()

    def _update_gauges(self) -> None:
        QUEUE_DEPTH.set(len(self._queue))
        if self._spool is not None:
            SPOOL_RECORDS.set(self._spool.records)
            SPOOL_BYTES.set(self._spool.bytes)
