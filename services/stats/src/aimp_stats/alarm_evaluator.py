"""The alarm evaluator: every interval, every enabled rule on every subject it selects.

One pass: read the rules and the alerts' states from SQL, compute each subject's
value (service windows from SQL; pod samples by scraping, only when a pod rule
exists), step each alert's state machine, store the changed states and the new
events in one transaction, then publish the events (Kafka and webhooks). States live
in SQL, so a restarted evaluator, or another replica taking over, carries on.

Only the holder of a Redis lease evaluates rules, so several stats replicas fire an
alarm once (with no rule and no alert, every replica only exports the gauges). While
Redis is unreachable a replica keeps the role it had (a lone replica goes on
evaluating).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from .alarm_domain import (
    AlertState,
    Phase,
    PodSample,
    Rule,
    ServiceWindow,
    Transition,
    holds,
    is_pattern,
    matches,
    pod_value,
    service_value,
    step,
)
from .alarm_exporter import EXPORT_WINDOW_S, ServiceExporter
from .alarm_notify import AlarmNotifier
from .alarm_sources import PodScraper, ServiceMetrics, Target
from .alarm_store import AlarmStore

log = logging.getLogger(__name__)

LEADER_KEY = "aimp:stats:alarm-evaluator"
NO_CALLS = ServiceWindow(requests=0, errors=0, throttled=0, p99_ms=None)
#: Take the lease if free, or extend it if ours; one round trip, atomic.
LEASE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

Samples = dict[str, tuple[PodSample | None, PodSample]]
TargetLister = Callable[[], Awaitable[list[Target]]]


@dataclass(frozen=True)
class Evaluation:
    """One alert's input for one pass."""

    rule: Rule
    subject: str
    service: str
    pod: str
    value: float | None


def alarm_event(ev: Evaluation, transition: Transition) -> dict[str, Any]:
    """The event published and stored for a transition."""
    rule = ev.rule
    return {
        "event_id": uuid.uuid4().hex,
        "ts": transition.at,
        "state": transition.kind,
        "rule_id": rule.id,
        "rule_name": rule.name,
        "metric": rule.metric,
        "service": ev.service,
        "pod": ev.pod,
        "value": transition.value,
        "comparison": rule.comparison,
        "threshold": rule.threshold,
        "hold_minutes": rule.hold_minutes,
        "active_since": transition.active_since,
    }


class AlarmEvaluator:
    def __init__(
        self,
        store: AlarmStore,
        metrics: ServiceMetrics,
        scraper: PodScraper,
        targets: TargetLister,
        notifier: AlarmNotifier,
        redis: Redis,
        *,
        interval_s: float,
        lease_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.scraper = scraper
        self.targets = targets
        self.notifier = notifier
        self.redis = redis
        self.interval_s = interval_s
        self.lease_s = lease_s
        self.clock = clock
        self.leader = False
        self.passes = 0
        self._me = uuid.uuid4().hex
        self._lease = redis.register_script(LEASE_SCRIPT)
        self._task: asyncio.Task[None] | None = None
        #: The service of every pod seen, so an alert on a pod that is gone names it.
        self._pod_services: dict[str, str] = {}
        self.exporter = ServiceExporter()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alarm-evaluator")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.leader:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                if await self.redis.get(LEADER_KEY) == self._me.encode():
                    await self.redis.delete(LEADER_KEY)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                # Without any rule or alert there is nothing to fire twice: every replica
                # just exports the service gauges, and nobody needs the lease.
                idle = not await asyncio.to_thread(self.store.has_work)
                if idle or await self._lead():
                    await self.evaluate_once()
            except asyncio.CancelledError:
                raise
            except (SQLAlchemyError, OSError) as exc:
                log.warning("alarm pass skipped: %s: %s", type(exc).__name__, str(exc)[:200])
            except Exception:
                log.exception("alarm pass failed")
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def _lead(self) -> bool:
        try:
            won = await self._lease(keys=[LEADER_KEY], args=[self._me, int(self.lease_s * 1000)])
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("alarm lease not renewed (keeping role %s): %s", self.leader, exc)
            return self.leader if self.passes else True
        if bool(won) != self.leader:
            log.info("alarm evaluator %s", "leads" if won else "stands by")
        self.leader = bool(won)
        return self.leader

    async def evaluate_once(self) -> list[dict[str, Any]]:
        """One pass over every enabled rule; returns the events it produced."""
        now = self.clock()
        every = {s.rule.id: s.rule for s in await asyncio.to_thread(self.store.rules)}
        rules = [r for r in every.values() if r.enabled]
        states = await asyncio.to_thread(self.store.states)
        evaluations = await asyncio.to_thread(self._service_evaluations, rules, states, now)
        await asyncio.to_thread(self._export, now)
        if any(r.on_pods for r in rules):
            evaluations += await self._pod_evaluations(rules, states)
        changed: dict[tuple[int, str], AlertState] = {}
        events: list[tuple[dict[str, Any], str | None]] = []
        for ev in evaluations:
            key = (ev.rule.id, ev.subject)
            old = states.get(key, AlertState())
            held = holds(ev.value, ev.rule.comparison, ev.rule.threshold)
            new, transition = step(old, ev.value, held, now, ev.rule.hold_s)
            if new.phase is not old.phase or new.since != old.since or key in states:
                changed[key] = new
            if transition is not None:
                events.append((alarm_event(ev, transition), ev.rule.webhook_url))
        # Alerts of disabled rules resolve; those of deleted rules are dropped silently.
        for key, state in states.items():
            rule = every.get(key[0])
            if rule is not None and rule.enabled:
                continue
            changed[key] = AlertState(Phase.OK, now, None)
            if rule is not None and state.phase is Phase.FIRING:
                ev = Evaluation(rule, key[1], self._subject_service(rule, key[1]), "", None)
                if rule.on_pods:
                    ev = Evaluation(rule, key[1], ev.service, key[1], None)
                resolved = Transition("resolved", now, None, state.since)
                events.append((alarm_event(ev, resolved), rule.webhook_url))
        await asyncio.to_thread(self.store.save, changed, [e for e, _ in events])
        for event, url in events:
            log.info(
                "alarm %s: rule %s on %s",
                event["state"],
                event["rule_name"],
                event["pod"] or event["service"],
                extra={"alarm": event},
            )
            self.notifier.notify(event, url)
        self.passes += 1
        return [e for e, _ in events]

    def _subject_service(self, rule: Rule, subject: str) -> str:
        return self._pod_services.get(subject, "") if rule.on_pods else subject

    def _export(self, now: float) -> None:
        self.exporter.update(now, self.metrics.windows(now - EXPORT_WINDOW_S, now, now))

    def _service_evaluations(
        self, rules: list[Rule], states: dict[tuple[int, str], AlertState], now: float
    ) -> list[Evaluation]:
        out = []
        by_window: dict[float, dict[str, ServiceWindow]] = {}
        for rule in rules:
            if rule.on_pods:
                continue
            if rule.window_s not in by_window:
                by_window[rule.window_s] = self.metrics.windows(now - rule.window_s, now, now)
            windows = by_window[rule.window_s]
            subjects = set(_selected(rule.service, windows))
            if not is_pattern(rule.service):
                subjects.add(rule.service)
            subjects |= {s for (rid, s) in states if rid == rule.id}
            for service in sorted(subjects):
                window = windows.get(service, NO_CALLS)
                value = (
                    service_value(rule.metric, window, rule.window_s, rule.min_requests)
                    if matches(rule.service, service)
                    else None  # no longer selected (the rule changed): resolve it
                )
                out.append(Evaluation(rule, service, service, "", value))
        return out

    async def _pod_evaluations(
        self, rules: list[Rule], states: dict[tuple[int, str], AlertState]
    ) -> list[Evaluation]:
        try:
            targets = await self.targets()
        except Exception as exc:
            log.warning("pod list unavailable, pod rules skipped: %s", exc)
            return []
        pod_rules = [r for r in rules if r.on_pods]
        targets = [
            t
            for t in targets
            if any(matches(r.service, t.service) and matches(r.pod, t.pod) for r in pod_rules)
        ]
        samples: Samples = await self.scraper.scrape(targets)
        self._pod_services.update({t.pod: t.service for t in targets})
        out = []
        for rule in pod_rules:
            pods = {
                t.pod
                for t in targets
                if matches(rule.service, t.service) and matches(rule.pod, t.pod)
            }
            pods |= {s for (rid, s) in states if rid == rule.id}
            for pod in sorted(pods):
                value = None
                if pod in samples and matches(rule.pod, pod):
                    previous, current = samples[pod]
                    value = pod_value(rule.metric, previous, current)
                service = self._pod_services.get(pod, "")
                out.append(Evaluation(rule, pod, service, pod, value))
        return out


def _selected(selector: str, names: Iterable[str]) -> list[str]:
    return [n for n in names if matches(selector, n)]
