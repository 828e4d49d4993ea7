"""Kafka helpers: a publisher that never blocks a call, and topic creation.

:class:`EventPublisher` keeps a bounded in-memory queue. ``publish`` only
enqueues; a background task sends batches and, while the broker is away,
keeps retrying with backoff so events survive a short outage in memory. When
the queue is full the oldest event is dropped and counted, so a call is never
slowed by Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

EVENTS_SENT = Counter("aimp_events_sent_total", "Events delivered to Kafka.", ["topic"])
EVENTS_DROPPED = Counter(
    "aimp_events_dropped_total", "Events dropped because the publish queue was full.", ["topic"]
)
QUEUE_DEPTH = Gauge("aimp_events_queued", "Events waiting to be sent to Kafka.")


class EventPublisher:
    """Non-blocking, batching Kafka publisher with retry while the broker is down."""

    def __init__(
        self,
        bootstrap: str,
        *,
        max_queue: int = 100_000,
        batch_size: int = 500,
        linger_s: float = 0.05,
        request_timeout_s: float = 5.0,
        retry_backoff_s: float = 0.5,
    ) -> None:
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.request_timeout_s = request_timeout_s
        self.retry_backoff_s = retry_backoff_s
        self._queue: deque[tuple[str, bytes, bytes]] = deque(maxlen=max_queue)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stopping = False

    def publish(self, topic: str, key: str, value: Mapping[str, Any]) -> None:
        """Enqueue one event; returns at once whatever the broker's state."""
        if len(self._queue) == self._queue.maxlen:
            EVENTS_DROPPED.labels(self._queue[0][0]).inc()
        self._queue.append((topic, key.encode(), json.dumps(value, separators=(",", ":")).encode()))
        QUEUE_DEPTH.set(len(self._queue))
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-publisher")

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Try to flush what is queued within the timeout, then close."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), flush_timeout_s)
            except TimeoutError:
                log.warning("event publisher stopped with %d events unsent", len(self._queue))
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self._close_producer()

    async def _connect(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                request_timeout_ms=int(self.request_timeout_s * 1000),
                linger_ms=int(self.linger_s * 1000),
                acks=1,
            )
            try:
                await asyncio.wait_for(producer.start(), self.request_timeout_s)
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _close_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), self.request_timeout_s)
            self._producer = None

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.linger_s)
                continue
            batch = [self._queue[i] for i in range(min(self.batch_size, len(self._queue)))]
            try:
                producer = await self._connect()
                futures = [await producer.send(t, value=v, key=k) for t, k, v in batch]
                await asyncio.wait_for(asyncio.gather(*futures), self.request_timeout_s)
            except (KafkaError, TimeoutError, OSError) as exc:
                log.warning(
                    "kafka unavailable, %d events kept for retry: %s", len(self._queue), exc
                )
                await self._close_producer()
                if self._stopping:
                    return
                await asyncio.sleep(self.retry_backoff_s)
                continue
            for _ in batch:
                topic = self._queue.popleft()[0]
                EVENTS_SENT.labels(topic).inc()
            QUEUE_DEPTH.set(len(self._queue))


async def ensure_topics(
    bootstrap: str, topics: Iterable[str], *, partitions: int = 3, timeout_s: float = 10.0
) -> None:
    """Create the topics that do not exist yet (idempotent)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
