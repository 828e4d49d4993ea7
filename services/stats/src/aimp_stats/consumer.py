"""Kafka adapter: consume request events into SQL, committing only what is stored.

Delivery is at-least-once (offsets are committed after the SQL transaction
succeeds) and storage is idempotent (an event already stored is skipped in the
same transaction that counts the others, :meth:`EventStore.ingest`), so each
call is counted exactly once even when a batch is redelivered after a crash,
a rebalance or a broker restart. Several instances in one group share the
partitions; their SQL transactions serialize on the ingest lock.

A broker with memory storage (Tansu) that restarts forgets the group's
committed offsets and starts its logs again at 0, and a consumer that kept its
position would skip the first records of the new log. So before each commit the
consumer reads the group's committed offsets back: if the broker has less than
this consumer committed, the log was lost, and the consumer rewinds every
partition it holds to the beginning (the producers re-send what the broker
lost; duplicates are skipped by the store).

A record that is not a valid :class:`~aimp_core.events.RequestEvent` is logged
with its offset, counted and skipped; it never stops the consumer. When the
broker goes away the consumer closes, waits (exponential backoff) and
reconnects; when SQL fails it rewinds to the batch start and retries, so
nothing is committed that is not stored.

Tansu note: Tansu numbers a new group's first generation 0, and aiokafka sends
LeaveGroup only for generations above 0, so a consumer stopped in generation 0
lingers in the group until its session times out (6 s); a restart within that
time waits for the ghost member once (~10 s) before it consumes. Apache Kafka
starts at generation 1 and is not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.exc import SQLAlchemyError

from aimp_core.events import RequestEvent
from aimp_core.kafka import ensure_topics

from .domain import InvalidEvent, decode_event, unique_by_event_id
from .settings import StatsSettings
from .store import EventStore

log = logging.getLogger(__name__)

EVENTS_CONSUMED = Counter(
    "aimp_stats_events_consumed_total", "Valid request events read from Kafka and stored in SQL."
)
EVENTS_REJECTED = Counter(
    "aimp_stats_events_rejected_total", "Records skipped because they are not valid events."
)
EVENTS_DUPLICATE = Counter(
    "aimp_stats_events_duplicate_total", "Valid events ignored because their event_id was stored."
)
INGEST_LAG = Histogram(
    "aimp_stats_ingest_lag_seconds",
    "From an event's ts (the gateway received the call) to its commit in SQL.",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
)
LOG_RESETS = Counter(
    "aimp_stats_broker_log_resets_total",
    "Times the broker had lost committed offsets (a restart) and the consumer rewound.",
)
LAST_WRITE = Gauge(
    "aimp_stats_last_write_timestamp_seconds", "Unix time of the last successful SQL write."
)
CONNECTED = Gauge("aimp_stats_consumer_connected", "1 while the consumer is joined to Kafka.")

Batches = dict[TopicPartition, list[ConsumerRecord]]


@dataclass(frozen=True)
class Rewind:
    """Where the consumer must read again: these offsets, or (None) every partition's start."""

    offsets: dict[TopicPartition, int] | None

    def apply(self, consumer: Any) -> None:
        if self.offsets is None:
            consumer.seek_to_beginning(*consumer.assignment())
            return
        held = consumer.assignment()
        for tp, offset in self.offsets.items():
            if tp in held:  # a partition lost in a rebalance is another member's now
                consumer.seek(tp, offset)


@dataclass
class ConsumerCounts:
    """What this consumer instance has done since it started (the metrics, per instance)."""

    consumed: int = 0
    rejected: int = 0
    duplicates: int = 0
    last_write_at: float | None = None


class RequestEventConsumer:
    """Background task reading ``aimp.requests.v1`` into an :class:`EventStore`."""

    def __init__(self, settings: StatsSettings, store: EventStore) -> None:
        self.settings = settings
        self.store = store
        self.counts = ConsumerCounts()
        self.connected = False
        self._task: asyncio.Task[None] | None = None
        self._retry_s = settings.consumer_retry_initial_s
        #: Offsets this instance committed, per partition it still holds.
        self._committed: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stats-consumer")

    async def stop(self) -> None:
        """Cancel the loop and close the Kafka consumer (which leaves its group)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._consume_until_failure()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning(
                    "stats consumer lost kafka, reconnecting in %.1f s: %s: %s",
                    self._retry_s,
                    type(exc).__name__,
                    exc,
                )
            except Exception:
                log.exception("stats consumer failed, restarting in %.1f s", self._retry_s)
            self._set_connected(False)
            await asyncio.sleep(self._retry_s)
            self._retry_s = min(self._retry_s * 2, self.settings.consumer_retry_max_s)

    async def _consume_until_failure(self) -> None:
        s = self.settings
        timeout_s = s.kafka_request_timeout_ms / 1000
        await ensure_topics(s.kafka_bootstrap, [s.requests_topic], timeout_s=timeout_s)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            rebalance_timeout_ms=s.kafka_rebalance_timeout_ms,
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
            max_poll_interval_ms=s.kafka_max_poll_interval_ms,
            request_timeout_ms=s.kafka_request_timeout_ms,
        )
        self._committed.clear()
        consumer.subscribe([s.requests_topic], listener=_ForgetRevoked(self._committed))
        try:
            await asyncio.wait_for(consumer.start(), timeout_s)
            self._set_connected(True)
            self._retry_s = s.consumer_retry_initial_s
            log.info("stats consumer started", extra={"topic": s.requests_topic})
            await self._pipeline(consumer)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), timeout_s)

    async def _next_batch(self, consumer: Any) -> Batches:
        """Records to store in one transaction: once one arrives, wait up to
        ``consume_batch_wait_ms`` for more (up to ``consume_batch_max_events``), since a
        transaction's cost is mostly per bucket row, not per event."""
        s = self.settings
        limit = s.consume_batch_max_events
        batches: Batches = await consumer.getmany(
            timeout_ms=s.consume_poll_timeout_ms, max_records=limit
        )
        count = sum(len(r) for r in batches.values())
        deadline = time.monotonic() + s.consume_batch_wait_ms / 1000
        while batches and count < limit and (left := deadline - time.monotonic()) > 0:
            more: Batches = await consumer.getmany(
                timeout_ms=max(1, int(left * 1000)), max_records=limit - count
            )
            for tp, records in more.items():
                batches.setdefault(tp, []).extend(records)
                count += len(records)
        return batches

    async def _pipeline(self, consumer: Any) -> None:
        """Fetch the next batch while the previous one is written to SQL.

        One write runs at a time (a thread) and offsets are committed in order after
        each write, so the overlap changes nothing about what is committed; it keeps
        the consumer fetching while SQL works (at 20k events/s writing a batch takes
        about as long as the batch took to arrive). A write that fails, or finds that
        the broker lost its log, asks for a rewind: it is applied only after the
        concurrent fetch has returned, and the batch fetched meanwhile is dropped (it
        is fetched again after the rewound one), so no record is skipped.
        """
        writing: asyncio.Task[Rewind | None] | None = None
        try:
            while True:
                batches = await self._next_batch(consumer)
                if writing is not None:
                    rewind = await writing
                    writing = None
                    if rewind is not None:
                        rewind.apply(consumer)
                        continue
                if batches:
                    writing = asyncio.create_task(self._handle(consumer, batches))
        finally:
            if writing is not None:
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writing

    async def _handle(self, consumer: Any, batches: Batches) -> Rewind | None:
        """Store one fetched batch and commit its offsets; or say where to rewind to."""
        events: list[RequestEvent] = []
        rejected = 0
        for tp, records in batches.items():
            for record in records:
                try:
                    events.append(decode_event(record.value))
                except InvalidEvent as exc:
                    rejected += 1
                    log.warning(
                        "skipping malformed request event at %s[%d] offset %d: %s",
                        tp.topic,
                        tp.partition,
                        record.offset,
                        exc,
                        extra={"partition": tp.partition, "offset": record.offset},
                    )
        unique = unique_by_event_id(events)
        try:
            result = await asyncio.to_thread(self.store.ingest, unique)
        except (SQLAlchemyError, OSError) as exc:
            # The driver's message, not SQLAlchemy's (which repeats the statement and rows).
            reason = str(getattr(exc, "orig", None) or exc)[:200]
            log.warning(
                "stats could not write %d events to SQL, retrying in %.1f s: %s: %s",
                len(unique),
                self._retry_s,
                type(exc).__name__,
                reason,
            )
            await asyncio.sleep(self._retry_s)
            self._retry_s = min(self._retry_s * 2, self.settings.consumer_retry_max_s)
            # Nothing is committed: fetch the same records again.
            return Rewind({tp: records[0].offset for tp, records in batches.items()})
        stored_at = time.time()
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        rewind = None
        if await self._broker_lost_log(consumer):
            LOG_RESETS.inc()
            log.warning(
                "the broker has lost this group's committed offsets (a restart): "
                "reading every partition again from the beginning"
            )
            self._committed.clear()
            rewind = Rewind(None)
        else:
            await consumer.commit(offsets)
            self._committed.update(offsets)
        self._retry_s = self.settings.consumer_retry_initial_s
        for event in unique:
            INGEST_LAG.observe(max(0.0, stored_at - event.ts))
        self._record(consumed=len(events), rejected=rejected, duplicates=len(events) - result.added)
        return rewind

    async def _broker_lost_log(self, consumer: Any) -> bool:
        """True if the broker's committed offsets are behind what this instance committed."""
        held = [tp for tp in consumer.assignment() if tp in self._committed]
        if not held:
            return False
        found = await asyncio.gather(*(consumer.committed(tp) for tp in held))
        return any(
            (got if got is not None else -1) < self._committed[tp]
            for tp, got in zip(held, found, strict=True)
        )

    def _record(self, *, consumed: int, rejected: int, duplicates: int) -> None:
        now = time.time()
        self.counts.consumed += consumed
        self.counts.rejected += rejected
        self.counts.duplicates += duplicates
        self.counts.last_write_at = now
        EVENTS_CONSUMED.inc(consumed)
        EVENTS_REJECTED.inc(rejected)
        EVENTS_DUPLICATE.inc(duplicates)
        LAST_WRITE.set(now)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        CONNECTED.set(1 if connected else 0)


class _ForgetRevoked(ConsumerRebalanceListener):  # type: ignore[misc]
    """Drops the remembered commits of partitions this instance no longer holds."""

    def __init__(self, committed: dict[TopicPartition, int]) -> None:
        self.committed = committed

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self.committed.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


async def kafka_ping(bootstrap: str, timeout_s: float) -> None:
    """Raise unless the broker answers a metadata request within ``timeout_s``."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
    finally:
        await client.close()
