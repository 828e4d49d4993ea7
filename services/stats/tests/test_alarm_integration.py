"""An error-rate alarm end to end: request events on a real Tansu broker, stats in SQLite,
the evaluator, aimp.alarms.v1 and a real webhook server (that fails once)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from aimp_core.kafka import EventPublisher, ensure_topics
from aimp_stats.app import create_app
from aimp_stats.settings import StatsSettings

from .conftest import KeyServer
from .test_alarm_notify import WebhookReceiver

pytestmark = pytest.mark.integration

HOLD_MINUTES = 0.1  # 6 s
CALLS_PER_S = 20


def request_event(service: str, status: int) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "ts": time.time(),
        "trace_id": uuid.uuid4().hex,
        "request_id": uuid.uuid4().hex,
        "client_id": "demo-app",
        "service": service,
        "revision": "r1",
        "instance_id": "pod-1",
        "status": status,
        "latency_ms": 3.0,
        "upstream_ms": 2.0,
        "bytes_in": 10,
        "bytes_out": 20,
        "outcome": "ok" if status < 400 else "upstream_error",
    }


class Traffic:
    """Publishes CALLS_PER_S request events per second for one service, with a status that
    the test switches, as the gateway would for real calls."""

    def __init__(self, publisher: EventPublisher, topic: str, service: str) -> None:
        self.publisher, self.topic, self.service = publisher, topic, service
        self.status = 200
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.publisher.publish(
                self.topic, self.service, request_event(self.service, self.status)
            )
            await asyncio.sleep(1 / CALLS_PER_S)

    def __enter__(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def wait_until(condition: Any, what: str, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.05)
    return time.time()


async def read_alarm_events(bootstrap: str, topic: str, count: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 15
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            found += [json.loads(r.value) for rs in batches.values() for r in rs]
        return found
    finally:
        await consumer.stop()


async def test_error_rate_alarm_fires_within_hold_and_resolves(
    tmp_path: Path,
    kafka_bootstrap: str,
    redis_url: str,
    stats_keys: KeyServer,
) -> None:
    """Errors past the rule fire within hold + 10 s, recovery resolves, the webhook gets both."""
    suffix = uuid.uuid4().hex[:8]
    service = f"alarmed-{suffix}"
    settings = StatsSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'stats.db'}",
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        requests_topic=f"aimp.requests.v1.test-{suffix}",
        consumer_group=f"stats-{suffix}",
        alarm_topic=f"aimp.alarms.v1.test-{suffix}",
        alarm_eval_interval_s=0.5,
        alarm_webhook_backoff_initial_s=0.2,
        backflow_sink_enabled=False,
        registry_url="http://127.0.0.1:9/eureka",  # no pod rules here
    )
    await ensure_topics(kafka_bootstrap, [settings.requests_topic, settings.alarm_topic])
    app = create_app(settings, verifier=stats_keys.verifier())
    publisher = EventPublisher(kafka_bootstrap, linger_s=0.01)
    await publisher.start()
    # The first delivery attempt fails (503): the firing event must arrive on a retry.
    with WebhookReceiver([503]) as hook:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://stats")
            op = stats_keys.headers("operator")
            rule = await client.post(
                "/v1/alarms/rules",
                json={
                    "name": "errors over 20%",
                    "metric": "error_rate",
                    "service": service,
                    "comparison": ">",
                    "threshold": 20,
                    "hold_minutes": HOLD_MINUTES,
                    "window_s": 5,
                    "webhook_url": hook.url,
                },
                headers=op,
            )
            assert rule.status_code == 201, rule.text
            with Traffic(publisher, settings.requests_topic, service) as traffic:
                await asyncio.sleep(2)  # healthy traffic first: nothing fires
                assert hook.attempts == []
                traffic.status = 500
                errors_began = time.time()
                fired_at = await wait_until(
                    lambda: len(hook.accepted) >= 1, "the firing webhook", 60 * HOLD_MINUTES + 12
                )
                firing = hook.accepted[0][1]
                assert firing["state"] == "firing" and firing["rule_id"] == rule.json()["id"]
                assert 60 * HOLD_MINUTES <= fired_at - errors_began <= 60 * HOLD_MINUTES + 10
                assert len(hook.attempts) >= 2  # the 503 was retried
                active = (await client.get("/v1/alarms/active", headers=op)).json()["alerts"]
                assert [(a["subject"], a["phase"]) for a in active] == [(service, "firing")]

                traffic.status = 200
                recovered = time.time()
                resolved_at = await wait_until(
                    lambda: len(hook.accepted) >= 2, "the resolved webhook", 20
                )
                print(
                    f"fired {fired_at - errors_began:.1f} s after errors began (hold "
                    f"{60 * HOLD_MINUTES:.0f} s), resolved {resolved_at - recovered:.1f} s "
                    "after recovery"
                )
            resolved = hook.accepted[1][1]
            assert resolved["state"] == "resolved" and resolved["service"] == service
            assert resolved["active_since"] == firing["active_since"]
            assert resolved["value"] <= 20

            history = await client.get(
                "/v1/alarms/history", params={"service": service}, headers=op
            )
            events = history.json()["events"]
            assert [e["state"] for e in events] == ["resolved", "firing"]
            assert {e["event_id"] for e in events} == {firing["event_id"], resolved["event_id"]}
            await client.aclose()
    with contextlib.suppress(Exception):
        await publisher.stop()
    on_kafka = await read_alarm_events(kafka_bootstrap, settings.alarm_topic, 2)
    assert [(e["state"], e["event_id"]) for e in on_kafka] == [
        ("firing", firing["event_id"]),
        ("resolved", resolved["event_id"]),
    ]
