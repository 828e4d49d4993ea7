"""The evaluator over a real SQLite with a fake clock: windows, hold, restart, disabling."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from aimp_core.db import make_engine
from aimp_core.events import RequestEvent
from aimp_core.kafka import EventPublisher
from aimp_core.net import free_port
from aimp_stats.alarm_evaluator import AlarmEvaluator
from aimp_stats.alarm_notify import AlarmNotifier, WebhookSender
from aimp_stats.alarm_sources import PodScraper, ServiceMetrics, Target
from aimp_stats.alarm_store import AlarmStore
from aimp_stats.store import EventStore

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def ev(i: int, ts: float, status: int, service: str = "iris") -> RequestEvent:
    return RequestEvent(
        event_id=f"e{i}-{ts}",
        ts=ts,
        trace_id="t",
        request_id="r",
        client_id="app",
        service=service,
        status=status,
        latency_ms=5.0,
        upstream_ms=1.0,
        bytes_in=1,
        bytes_out=1,
        outcome="ok" if status < 500 else "upstream_error",
    )


@pytest.fixture
def parts(tmp_path: Path, redis_url: str) -> tuple[EventStore, AlarmStore, AlarmNotifier]:
    engine = make_engine(f"sqlite:///{tmp_path / 'stats.db'}")
    events, alarms = EventStore(engine), AlarmStore(engine)
    events.create_schema()
    alarms.create_schema()
    sender = WebhookSender(timeout_s=1, attempts=1, backoff_initial_s=0, backoff_max_s=0)
    publisher = EventPublisher(f"127.0.0.1:{free_port()}")
    return events, alarms, AlarmNotifier(publisher, "t", sender, default_webhook_url=None)


def evaluator(
    parts: tuple[EventStore, AlarmStore, AlarmNotifier], clock: Clock, redis_url: str
) -> AlarmEvaluator:
    events, alarms, notifier = parts

    async def no_pods() -> list[Target]:
        return []

    return AlarmEvaluator(
        alarms,
        ServiceMetrics(events),
        PodScraper(1.0),
        no_pods,
        notifier,
        Redis.from_url(redis_url),
        interval_s=1,
        lease_s=3,
        clock=clock,
    )


RULE = {
    "name": "errors",
    "metric": "error_rate",
    "service": "*",
    "pod": "*",
    "comparison": ">",
    "threshold": 20.0,
    "hold_minutes": 1.0,
    "window_s": 30.0,
    "min_requests": 5,
    "webhook_url": None,
    "enabled": True,
}


async def test_fires_after_hold_survives_restart_and_resolves_on_disable(
    parts: tuple[EventStore, AlarmStore, AlarmNotifier], redis_url: str
) -> None:
    """Pending for 60 s of fake time, then firing once (even across a restart); disabling
    the rule resolves it."""
    events, alarms, notifier = parts
    clock = Clock()
    rule_id = alarms.create_rule(RULE).rule.id
    first = evaluator(parts, clock, redis_url)
    kinds = []
    for step in range(0, 100, 10):  # a 50 % error rate, every 10 s
        clock.now = T0 + step
        events.insert_events([ev(i, clock.now - 1, 500 if i % 2 else 200) for i in range(10)])
        kinds += [(step, e["state"]) for e in await first.evaluate_once()]
        if step == 40:
            first = evaluator(parts, clock, redis_url)  # a restart mid-pending
    assert kinds == [(60, "firing")]
    assert alarms.history(service="iris", rule_id=rule_id, since=None, until=None, limit=9)

    second = evaluator(parts, clock, redis_url)  # a restart while firing: no second firing
    clock.now += 10
    events.insert_events([ev(i, clock.now - 1, 500) for i in range(10)])
    assert await second.evaluate_once() == []

    alarms.update_rule(rule_id, {"enabled": False})
    clock.now += 10
    (resolved,) = await second.evaluate_once()
    assert (resolved["state"], resolved["service"], resolved["value"]) == ("resolved", "iris", None)
    assert alarms.states() == {}
    assert notifier.publisher.pending == 2


async def test_too_few_calls_and_quiet_services_never_fire(
    parts: tuple[EventStore, AlarmStore, AlarmNotifier], redis_url: str
) -> None:
    """Below min_requests there is no data; a named quiet service alarms on qps < 1."""
    events, alarms, _ = parts
    clock = Clock()
    alarms.create_rule({**RULE, "hold_minutes": 0.0})
    alarms.create_rule(
        {**RULE, "name": "quiet", "metric": "qps", "service": "silent", "comparison": "<",
         "threshold": 1.0, "hold_minutes": 0.0}
    )  # fmt: skip
    evaluate = evaluator(parts, clock, redis_url)
    events.insert_events([ev(i, T0 - 1, 500) for i in range(4)])  # 100 % of only 4 calls
    fired = await evaluate.evaluate_once()
    assert [(e["rule_name"], e["service"]) for e in fired] == [("quiet", "silent")]
