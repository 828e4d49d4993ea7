"""Kafka adapter: consume request events into SQL, committing only what is stored.

Delivery is at-least-once (offsets are committed after the SQL transaction
succeeds) and storage is idempotent (``event_id`` is the primary key), so each
call is counted exactly once even when a batch is redelivered after a crash,
a rebalance or a broker restart.

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

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge
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
LAST_WRITE = Gauge(
    "aimp_stats_last_write_timestamp_seconds", "Unix time of the last successful SQL write."
)
CONNECTED = Gauge("aimp_stats_consumer_connected", "1 while the consumer is joined to Kafka.")

Batches = dict[TopicPartition, list[ConsumerRecord]]


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
            s.requests_topic,
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
        try:
            await asyncio.wait_for(consumer.start(), timeout_s)
            self._set_connected(True)
            self._retry_s = s.consumer_retry_initial_s
            log.info("stats consumer started", extra={"topic": s.requests_topic})
            while True:
                batches: Batches = await consumer.getmany(
                    timeout_ms=s.consume_poll_timeout_ms, max_records=s.consume_batch_max_events
                )
                if batches:
                    await self._handle(consumer, batches)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), timeout_s)

    async def _handle(self, consumer: Any, batches: Batches) -> None:
        """Store one fetched batch, then commit its offsets (or rewind it if SQL failed)."""
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
            added = await asyncio.to_thread(self.store.insert_events, unique)
        except (SQLAlchemyError, OSError) as exc:
            # Nothing is committed: rewind so the next poll fetches the same records again.
            for tp, records in batches.items():
                consumer.seek(tp, records[0].offset)
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
            return
        await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        self._retry_s = self.settings.consumer_retry_initial_s
        self._record(consumed=len(events), rejected=rejected, duplicates=len(events) - added)

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


async def kafka_ping(bootstrap: str, timeout_s: float) -> None:
    """Raise unless the broker answers a metadata request within ``timeout_s``."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
    finally:
        await client.close()
