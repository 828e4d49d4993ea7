"""Kafka adapter: the backflow sink, sampled payloads from ``aimp.backflow.v1`` into files.

Each fetched batch is validated, redacted with its service's list (from SQL, cached
for ``backflow_redaction_refresh_s``), appended to the part files and fsynced; only
then are its offsets committed. Delivery is therefore at-least-once: a crash between
the write and the commit writes that batch again on restart (records carry their
``request_id`` for deduplication downstream). Malformed records are logged, counted
and skipped; a lost broker or a failing disk is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from aimp_core.kafka import ensure_topics

from .backflow_domain import InvalidRecord, decode_record, redact
from .backflow_files import PartitionWriter
from .backflow_store import BackflowConfigStore
from .settings import StatsSettings

log = logging.getLogger(__name__)

WRITTEN = Counter("aimp_stats_backflow_records_written_total", "Sampled calls written to files.")
REJECTED = Counter(
    "aimp_stats_backflow_records_rejected_total", "Backflow records skipped as malformed."
)
BYTES = Counter("aimp_stats_backflow_bytes_written_total", "Compressed backflow bytes written.")
SINK_CONNECTED = Gauge("aimp_stats_backflow_sink_connected", "1 while the sink is joined to Kafka.")

Batches = dict[TopicPartition, list[ConsumerRecord]]


def backflow_root(settings: StatsSettings) -> Path:
    """``$AIMP_HOME/backflow``: where the sink writes and the export API reads."""
    return settings.home / "backflow"


class Redactions:
    """Each service's redaction paths from SQL, re-read at most every ``refresh_s``."""

    def __init__(self, store: BackflowConfigStore, refresh_s: float) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._paths: dict[str, tuple[str, ...]] = {}
        self._loaded_at = -float("inf")

    async def get(self) -> dict[str, tuple[str, ...]]:
        if time.monotonic() - self._loaded_at >= self.refresh_s:
            self._paths = await asyncio.to_thread(self.store.redactions)
            self._loaded_at = time.monotonic()
        return self._paths

    def invalidate(self) -> None:
        """Re-read on next use (the API calls this after a change)."""
        self._loaded_at = -float("inf")


class BackflowSink:
    """Background task writing ``aimp.backflow.v1`` into a :class:`PartitionWriter`."""

    def __init__(
        self, settings: StatsSettings, writer: PartitionWriter, redactions: Redactions
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.redactions = redactions
        self.written = 0
        self.rejected = 0
        self.connected = False
        self._task: asyncio.Task[None] | None = None
        self._retry_s = 0.5

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="backflow-sink")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning(
                    "backflow sink lost kafka, retrying in %.1f s: %s: %s",
                    self._retry_s,
                    type(exc).__name__,
                    exc,
                )
            except Exception:
                log.exception("backflow sink failed, restarting in %.1f s", self._retry_s)
            self._set_connected(False)
            await asyncio.sleep(self._retry_s)
            self._retry_s = min(self._retry_s * 2, 5.0)

    async def _consume(self) -> None:
        s = self.settings
        timeout_s = s.kafka_request_timeout_ms / 1000
        await ensure_topics(s.kafka_bootstrap, [s.backflow_topic], timeout_s=timeout_s)
        consumer = AIOKafkaConsumer(
            s.backflow_topic,
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.backflow_consumer_group,
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
            self._retry_s = 0.5
            while True:
                batches: Batches = await consumer.getmany(
                    timeout_ms=s.backflow_poll_timeout_ms,
                    max_records=s.backflow_batch_max_records,
                )
                if batches:
                    await self._handle(consumer, batches)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), timeout_s)

    async def _handle(self, consumer: Any, batches: Batches) -> None:
        """Write one batch durably, then commit it; on a write failure rewind and retry."""
        records: list[dict[str, Any]] = []
        rejected = 0
        try:
            paths = await self.redactions.get()
        except SQLAlchemyError as exc:
            await self._rewind(consumer, batches, f"redaction lists unreadable: {exc}")
            return
        for tp, items in batches.items():
            for item in items:
                try:
                    record = decode_record(item.value)
                except InvalidRecord as exc:
                    rejected += 1
                    log.warning(
                        "skipping malformed backflow record at %s[%d] offset %d: %s",
                        tp.topic,
                        tp.partition,
                        item.offset,
                        exc,
                    )
                    continue
                records.append(redact(record, paths.get(record["service"], ())))
        try:
            written = await asyncio.to_thread(self.writer.write, records)
        except OSError as exc:
            await self._rewind(consumer, batches, f"{type(exc).__name__}: {exc}")
            return
        await consumer.commit({tp: items[-1].offset + 1 for tp, items in batches.items()})
        self._retry_s = 0.5
        self.written += len(records)
        self.rejected += rejected
        WRITTEN.inc(len(records))
        REJECTED.inc(rejected)
        BYTES.inc(written)

    async def _rewind(self, consumer: Any, batches: Batches, reason: str) -> None:
        for tp, items in batches.items():
            consumer.seek(tp, items[0].offset)
        log.warning("backflow sink could not write, retrying in %.1f s: %s", self._retry_s, reason)
        await asyncio.sleep(self._retry_s)
        self._retry_s = min(self._retry_s * 2, 5.0)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        SINK_CONNECTED.set(1 if connected else 0)
