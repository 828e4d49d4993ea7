"""Telling the world about alarms: ``aimp.alarms.v1`` and webhooks with bounded retries.

Kafka: each event is enqueued on the non-blocking :class:`EventPublisher` (key =
service). Webhooks: each URL has its own queue and worker, so events reach one
receiver in the order they happened (firing before resolved) and a slow receiver
delays no other. A delivery is a JSON POST; a 2xx answer ends it; a connection
failure, a timeout, 408, 425, 429 or a 5xx is retried with doubling backoff (a
``Retry-After`` is honoured, capped); any other status, or running out of attempts,
gives up, logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import httpx
from prometheus_client import Counter

from aimp_core.kafka import EventPublisher, ensure_topics

log = logging.getLogger(__name__)

WEBHOOK_DELIVERED = Counter(
    "aimp_stats_alarm_webhook_delivered_total", "Alarm events a webhook accepted."
)
WEBHOOK_FAILED = Counter(
    "aimp_stats_alarm_webhook_failed_total", "Alarm events a webhook never accepted."
)
WEBHOOK_RETRIED = Counter("aimp_stats_alarm_webhook_retries_total", "Webhook attempts repeated.")
RETRY_STATUSES = frozenset({408, 425, 429})


def retryable(status: int) -> bool:
    """Whether an answer with ``status`` is worth trying again."""
    return status in RETRY_STATUSES or status >= 500


def backoff_s(attempt: int, initial_s: float, max_s: float, retry_after: str | None) -> float:
    """Wait before attempt ``attempt + 1``: doubling from ``initial_s``, or Retry-After."""
    if retry_after is not None and retry_after.strip().isdigit():
        return min(float(retry_after), max_s)
    return min(initial_s * 2.0 ** (attempt - 1), max_s)


class WebhookSender:
    """POSTs one event to one URL, retrying as the module says."""

    def __init__(
        self, *, timeout_s: float, attempts: int, backoff_initial_s: float, backoff_max_s: float
    ) -> None:
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s

    async def deliver(self, http: httpx.AsyncClient, url: str, event: Mapping[str, Any]) -> bool:
        reason = ""
        for attempt in range(1, self.attempts + 1):
            retry_after = None
            try:
                resp = await http.post(url, json=event, timeout=self.timeout_s)
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            else:
                if 200 <= resp.status_code < 300:
                    WEBHOOK_DELIVERED.inc()
                    return True
                reason = f"HTTP {resp.status_code}"
                if not retryable(resp.status_code):
                    break
                retry_after = resp.headers.get("retry-after")
            if attempt < self.attempts:
                WEBHOOK_RETRIED.inc()
                await asyncio.sleep(
                    backoff_s(attempt, self.backoff_initial_s, self.backoff_max_s, retry_after)
                )
        WEBHOOK_FAILED.inc()
        log.warning(
            "alarm webhook gave up on event %s after %s: %s",
            event.get("event_id"),
            f"{attempt} attempt(s)",
            reason,
            extra={"rule_id": event.get("rule_id")},
        )
        return False


class AlarmNotifier:
    """Publishes alarm events to Kafka and hands them to per-URL webhook workers."""

    def __init__(
        self,
        publisher: EventPublisher,
        topic: str,
        sender: WebhookSender,
        *,
        default_webhook_url: str | None,
    ) -> None:
        self.publisher = publisher
        self.topic = topic
        self.sender = sender
        self.default_webhook_url = default_webhook_url
        self._queues: dict[str, asyncio.Queue[Mapping[str, Any]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._http: httpx.AsyncClient | None = None
        self._topic: asyncio.Task[None] | None = None

    def notify(self, event: Mapping[str, Any], webhook_url: str | None) -> None:
        """Send ``event`` on its way; returns at once."""
        self.publisher.publish(self.topic, str(event["service"]), event)
        url = webhook_url or self.default_webhook_url
        if url:
            if url not in self._queues:
                self._queues[url] = asyncio.Queue()
                self._workers[url] = asyncio.create_task(self._work(url), name="alarm-webhook")
            self._queues[url].put_nowait(event)

    async def start(self) -> None:
        await self.publisher.start()
        self._topic = asyncio.create_task(self._ensure_topic(), name="alarm-topic")

    async def _ensure_topic(self) -> None:
        try:
            await ensure_topics(self.publisher.bootstrap, [self.topic])
        except Exception as exc:  # publishing retries anyway; the broker may come later
            log.warning("could not ensure Kafka topic %s: %s", self.topic, exc)

    async def stop(self, drain_s: float = 5.0) -> None:
        """Give pending webhooks ``drain_s`` to go out, then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(q.join() for q in self._queues.values())), drain_s
            )
        for task in [*self._workers.values(), *([self._topic] if self._topic else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._queues.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        await self.publisher.stop()

    async def _work(self, url: str) -> None:
        queue = self._queues[url]
        while True:
            event = await queue.get()
            try:
                if self._http is None:
                    self._http = httpx.AsyncClient(follow_redirects=False)
                await self.sender.deliver(self._http, url, event)
            except Exception:
                log.exception("alarm webhook worker failed on one event")
            finally:
                queue.task_done()
