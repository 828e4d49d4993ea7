"""Data backflow in the gateway: sample whole calls to ``aimp.backflow.v1``, off the hot path.

Which calls: a call answered by a pod is sampled when a hash of its request id falls
below its service's rate (0-100 %), so the decision is deterministic per request id
and the sampled share converges on the rate. Rates come from Redis (the stats service
writes them, see ``aimp_stats.backflow_store``): the gateway loads the rates hash at
start, reloads it when the version key changes, and learns of a change at once from a
pub/sub message, or on its next version poll (every ``poll_s``) if the message was
missed. While Redis is away the last rates stay in force.

What is sent: the request and response bodies, each decoded when it is JSON, else
base64 with its content type; a body above ``max_body_bytes`` is left out (``skipped:
"too_large"``), so one huge tensor cannot flood Kafka. Publishing only enqueues (the
:class:`~aimp_core.kafka.EventPublisher`); the work happens after the answer was sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from aimp_core.events import TOPIC_BACKFLOW
from aimp_core.kafka import EventPublisher, ensure_topics
from aimp_core.ratelimit.loops import follow_channel
from aimp_core.registry_client import META_REVISION, Instance
from aimp_core.tracing import current_trace_id
from aimp_gateway.settings import GatewaySettings
from aimp_gateway.upstream import UpstreamResponse

log = logging.getLogger(__name__)

#: The Redis protocol shared with the stats service (aimp_stats.backflow_store).
RATES_KEY = "aimp:backflow:rates"
VERSION_KEY = "aimp:backflow:version"
CHANNEL = "aimp:backflow:changed"
#: Hash buckets per 100 %: rates resolve to 0.0001 % steps.
BUCKETS = 1_000_000

SAMPLED = Counter("aimp_gateway_backflow_sampled_total", "Calls sampled to aimp.backflow.v1.")
BODY_SKIPPED = Counter(
    "aimp_gateway_backflow_bodies_skipped_total", "Sampled bodies left out for their size."
)


def bucket(request_id: str) -> int:
    """A uniform number in ``[0, BUCKETS)`` fixed by the request id."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def is_sampled(request_id: str, rate_percent: float) -> bool:
    """Whether a call is sampled at ``rate_percent``; monotonic in the rate."""
    if rate_percent <= 0:
        return False
    return rate_percent >= 100 or bucket(request_id) < rate_percent * (BUCKETS // 100)


def parse_rates(raw: Mapping[bytes, bytes]) -> dict[str, float]:
    """The rates hash as ``{service: percent}``; entries that are not numbers are dropped."""
    rates = {}
    for key, value in raw.items():
        try:
            rate = float(value)
        except ValueError:
            continue
        if 0 < rate <= 100:
            rates[key.decode()] = rate
    return rates


def _content_type(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.decode("latin-1")
    return ""


def payload(body: bytes, content_type: str, max_bytes: int) -> dict[str, Any]:
    """One body as the backflow record holds it: decoded JSON, base64, or left out."""
    out: dict[str, Any] = {"content_type": content_type, "size": len(body)}
    if not body:
        return {**out, "encoding": "none", "body": None}
    if len(body) > max_bytes:
        BODY_SKIPPED.inc()
        return {**out, "encoding": "none", "body": None, "skipped": "too_large"}
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        with contextlib.suppress(ValueError):
            return {**out, "encoding": "json", "body": json.loads(body)}
    return {**out, "encoding": "base64", "body": base64.b64encode(body).decode()}


class BackflowSampler:
    """Holds the live rates and publishes sampled calls."""

    def __init__(
        self,
        redis: Redis,
        publisher: EventPublisher,
        *,
        max_body_bytes: int,
        poll_s: float,
        retry_s: float = 1.0,
    ) -> None:
        self.redis = redis
        self.publisher = publisher
        self.max_body_bytes = max_body_bytes
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.rates: dict[str, float] = {}
        self.version: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._topic: asyncio.Task[None] | None = None

    def offer(
        self,
        scope: MutableMapping[str, Any],
        *,
        ts: float,
        service: str,
        client_id: str,
        instance: Instance | None,
        request_body: bytes,
        response: UpstreamResponse,
    ) -> bool:
        """Publish the call if its service's rate samples it; returns whether it did."""
        rate = self.rates.get(service)
        if not rate:
            return False
        request_id: str = scope["state"]["request_id"]
        if not is_sampled(request_id, rate):
            return False
        try:
            record = {
                "request_id": request_id,
                "trace_id": current_trace_id(),
                "ts": ts,
                "service": service,
                "revision": instance.metadata.get(META_REVISION, "") if instance else "",
                "client_id": client_id,
                "status": response.status,
                "request": payload(
                    request_body, _content_type(scope["headers"]), self.max_body_bytes
                ),
                "response": payload(
                    response.body, _content_type(response.raw_headers), self.max_body_bytes
                ),
            }
            self.publisher.publish(TOPIC_BACKFLOW, service, record)
        except Exception:  # never let sampling break a call that was already answered
            log.exception("backflow sample dropped", extra={"service": service})
            return False
        SAMPLED.inc()
        return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="backflow-rates")
        self._topic = asyncio.create_task(self._ensure_topic(), name="backflow-topic")

    async def _ensure_topic(self) -> None:
        """Create the topic so a sample never waits on a broker that lacks it."""
        try:
            await ensure_topics(self.publisher.bootstrap, [TOPIC_BACKFLOW])
        except Exception as exc:
            log.warning("could not ensure Kafka topic %s: %s", TOPIC_BACKFLOW, exc)

    async def stop(self) -> None:
        for task in (self._task, self._topic):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._topic = None
        await self.redis.aclose()

    async def refresh(self) -> None:
        """Reload the rates if the version in Redis differs from the one loaded."""
        raw_version = await self.redis.get(VERSION_KEY)
        version = int(raw_version) if raw_version is not None else 0
        if version == self.version:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(RATES_KEY)
            pipe.get(VERSION_KEY)
            raw, raw_version = await pipe.execute()
        self.rates = parse_rates(raw)
        self.version = int(raw_version) if raw_version is not None else 0
        log.info("backflow rates loaded", extra={"version": self.version, "rates": self.rates})

    async def _run(self) -> None:
        failing = False

        async def refresh() -> None:
            nonlocal failing
            await self.refresh()
            if failing:
                log.info("redis answers again; backflow rates follow it")
                failing = False

        while True:
            try:
                # Wakes at once on a change message, else after poll_s (the safety net).
                await follow_channel(self.redis, CHANNEL, refresh, poll_s=self.poll_s)
            except (RedisError, OSError, TimeoutError) as exc:
                if not failing:
                    log.warning(
                        "redis unreachable, backflow keeps its last rates: %s",
                        f"{type(exc).__name__}: {exc}"[:200],
                    )
                    failing = True
            await asyncio.sleep(self.retry_s)


def build_sampler(settings: GatewaySettings, publisher: EventPublisher) -> BackflowSampler:
    """A sampler with its own Redis client (pub/sub needs a connection that may block)."""
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.gateway_backflow_poll_s + 2.0,
        socket_connect_timeout=settings.http_timeout_s,
    )
    return BackflowSampler(
        redis,
        publisher,
        max_body_bytes=settings.gateway_backflow_max_body_bytes,
        poll_s=settings.gateway_backflow_poll_s,
    )
