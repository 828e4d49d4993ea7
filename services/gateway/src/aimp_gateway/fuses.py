"""The gateway's fuses: one breaker, bulkhead and retry budget per service (and optionally
one breaker per instance), built lazily from the live policy and rebuilt when it changes.

:meth:`Fuses.of` is on the hot path: when the service's policy is the very object
seen last time it is one dict lookup and one identity check. A new but equal
policy (a config change to another service) keeps everything; a changed one
rebuilds only the parts whose settings changed, so a new timeout does not reset
an open breaker. Calls under way keep the objects they started with.

Prometheus sees the breakers through a collector that reads them at scrape time
(``aimp_gateway_breaker_state``: 0 closed, 1 open, 2 half-open), so the hot path
updates no gauge.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aimp_core.registry_client import Instance
from aimp_gateway.breaker import (
    STATE_VALUE,
    BreakerState,
    BreakerView,
    CircuitBreaker,
)
from aimp_gateway.bulkhead import Bulkhead
from aimp_gateway.policy import BreakerPolicy, ServicePolicy
from aimp_gateway.retry_budget import RetryBudget
from aimp_gateway.routing import InstanceKey, key_of

log = logging.getLogger(__name__)

Clock = Callable[[], float]

REFUSALS = Counter(
    "aimp_gateway_fuse_refusals_total",
    "Calls the gateway refused (503 or fallback) without calling the service: breaker_open "
    "(service breaker), instance_breakers_open (every instance's breaker), bulkhead_full.",
    ["service", "reason"],
)
FALLBACKS = Counter(
    "aimp_gateway_fallbacks_total",
    "Calls answered with the service's configured fallback, by the reason it was used.",
    ["service", "reason"],
)
RETRY_BUDGET_EXHAUSTED = Counter(
    "aimp_gateway_retry_budget_exhausted_total",
    "Retries not made because the service's retry budget was spent.",
    ["service"],
)
TRANSITIONS = Counter(
    "aimp_gateway_breaker_transitions_total",
    "Breaker state changes, by scope (service or instance) and the state entered.",
    ["service", "scope", "state"],
)

#: Prune per-instance breakers of instances gone from the registry once there are this
#: many more breakers than UP instances (rare: a sweep over one service's breakers).
_PRUNE_SLACK = 8


def _listener(service: str, scope: str, instance_id: str) -> Callable[..., None]:
    def on_transition(source: BreakerState, target: BreakerState) -> None:
        TRANSITIONS.labels(service, scope, target.value).inc()
        level = logging.WARNING if target is BreakerState.OPEN else logging.INFO
        log.log(
            level,
            "circuit breaker %s",
            target.value,
            extra={
                "service": service,
                "scope": scope,
                "instance_id": instance_id,
                "from_state": source.value,
            },
        )

    return on_transition


class InstanceBreakers:
    """One breaker per instance of a service, made on an instance's first call."""

    __slots__ = ("_by_key", "_clock", "not_closed", "policy", "service")

    def __init__(self, service: str, policy: BreakerPolicy, *, clock: Clock) -> None:
        self.service = service
        self.policy = policy
        self._clock = clock
        #: instance key -> (instance id, its breaker).
        self._by_key: dict[InstanceKey, tuple[str, CircuitBreaker]] = {}
        #: Breakers not closed now (0 lets :meth:`usable` skip its scan).
        self.not_closed = 0

    def of(self, instance: Instance) -> CircuitBreaker:
        key = key_of(instance)
        entry = self._by_key.get(key)
        if entry is None:
            breaker = CircuitBreaker(
                self.policy, clock=self._clock, listener=self._listener(instance.instance_id)
            )
            entry = self._by_key[key] = (instance.instance_id, breaker)
        return entry[1]

    def _listener(self, instance_id: str) -> Callable[[BreakerState, BreakerState], None]:
        log_transition = _listener(self.service, "instance", instance_id)

        def on_transition(source: BreakerState, target: BreakerState) -> None:
            if source is BreakerState.CLOSED:
                self.not_closed += 1
            elif target is BreakerState.CLOSED:
                self.not_closed -= 1
            log_transition(source, target)

        return on_transition

    def usable(self, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
        """``instances`` whose breaker would let a call through now (all of them, at the
        cost of one check, while every breaker is closed)."""
        if not self.not_closed:
            return instances
        by_key = self._by_key
        keep = []
        for inst in instances:
            entry = by_key.get(key_of(inst))
            if entry is None or entry[1].would_permit():
                keep.append(inst)
        return tuple(keep)

    def retry_after_s(self, instances: Iterable[Instance]) -> float:
        """The shortest wait until one of ``instances`` lets trial calls through again."""
        waits = [
            entry[1].retry_after_s()
            for inst in instances
            if (entry := self._by_key.get(key_of(inst))) is not None
        ]
        return min(waits, default=0.0)

    def prune(self, up: tuple[Instance, ...]) -> None:
        """Forget the breakers of instances no longer UP (``up``: the service's UP ones),
        once enough of them piled up: a length check per call, a sweep rarely."""
        if len(self._by_key) <= len(up) + _PRUNE_SLACK:
            return
        keys = {key_of(i) for i in up}
        for key in [k for k in self._by_key if k not in keys]:
            _, breaker = self._by_key.pop(key)
            if breaker.state is not BreakerState.CLOSED:
                self.not_closed -= 1

    def items(self) -> list[tuple[str, CircuitBreaker]]:
        """(instance id, breaker), by instance id."""
        return sorted(self._by_key.values(), key=lambda e: e[0])


class ServiceFuses:
    """The fuses of one service under one policy."""

    __slots__ = ("breaker", "budget", "bulkhead", "instances", "policy", "service")

    def __init__(
        self,
        service: str,
        policy: ServicePolicy,
        *,
        clock: Clock,
        previous: ServiceFuses | None = None,
    ) -> None:
        self.service = service
        self.policy = policy
        old = previous.policy if previous is not None else None
        self.breaker: CircuitBreaker | None = None
        if previous is not None and old is not None and old.breaker == policy.breaker:
            self.breaker = previous.breaker
        elif policy.breaker is not None:
            self.breaker = CircuitBreaker(
                policy.breaker, clock=clock, listener=_listener(service, "service", "")
            )
        self.bulkhead: Bulkhead | None = None
        if previous is not None and old is not None and old.max_concurrent == policy.max_concurrent:
            self.bulkhead = previous.bulkhead
        elif policy.max_concurrent is not None:
            self.bulkhead = Bulkhead(policy.max_concurrent)
        retry = policy.retry
        self.budget: RetryBudget
        if (
            previous is not None
            and old is not None
            and (old.retry.budget_percent, old.retry.min_retries_per_s)
            == (retry.budget_percent, retry.min_retries_per_s)
        ):
            self.budget = previous.budget
        else:
            self.budget = RetryBudget(
                percent=retry.budget_percent, min_retries_per_s=retry.min_retries_per_s, clock=clock
            )
        self.instances: InstanceBreakers | None = None
        if (
            previous is not None
            and old is not None
            and old.instance_breaker == policy.instance_breaker
        ):
            self.instances = previous.instances
        elif policy.instance_breaker is not None:
            self.instances = InstanceBreakers(service, policy.instance_breaker, clock=clock)

    def breakers(self) -> Iterator[tuple[str, CircuitBreaker]]:
        """(instance id, breaker) for the service breaker (id "") and every instance one."""
        if self.breaker is not None:
            yield "", self.breaker
        if self.instances is not None:
            yield from self.instances.items()


@dataclass(frozen=True)
class BreakerRow:
    """One breaker as operators see it: whose it is, and its view."""

    service: str
    instance_id: str
    view: BreakerView
    bulkhead_in_flight: int | None
    bulkhead_max: int | None
    retry_balance: float


class Fuses:
    """Every service's fuses in this gateway process."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._services: dict[str, ServiceFuses] = {}
        _COLLECTOR.watch(self)

    def of(self, service: str, policy: ServicePolicy) -> ServiceFuses:
        """The fuses for ``service`` under ``policy`` (rebuilt in part when it changed)."""
        current = self._services.get(service)
        if current is not None and current.policy is policy:
            return current
        if current is not None and current.policy == policy:
            current.policy = policy  # the same settings in a new snapshot: keep everything
            return current
        fresh = ServiceFuses(service, policy, clock=self._clock, previous=current)
        self._services[service] = fresh
        return fresh

    def services(self) -> list[ServiceFuses]:
        return [self._services[name] for name in sorted(self._services)]

    def rows(self) -> list[BreakerRow]:
        """Every breaker, service breakers first within each service, with its view now."""
        rows = []
        for fuses in self.services():
            bulkhead = fuses.bulkhead
            balance = round(fuses.budget.balance(), 3)
            for instance_id, breaker in fuses.breakers():
                rows.append(
                    BreakerRow(
                        service=fuses.service,
                        instance_id=instance_id,
                        view=breaker.view(),
                        bulkhead_in_flight=bulkhead.in_flight if bulkhead else None,
                        bulkhead_max=bulkhead.max_concurrent if bulkhead else None,
                        retry_balance=balance,
                    )
                )
        return rows


class _FuseCollector(Collector):
    """Reads every live :class:`Fuses` at scrape time."""

    def __init__(self) -> None:
        self._watched: weakref.WeakSet[Fuses] = weakref.WeakSet()

    def watch(self, fuses: Fuses) -> None:
        self._watched.add(fuses)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "aimp_gateway_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open (instance '' = the "
            "service's breaker).",
            labels=["service", "instance"],
        )
        failure = GaugeMetricFamily(
            "aimp_gateway_breaker_failure_rate_percent",
            "Failed calls in the breaker's current window, in percent.",
            labels=["service", "instance"],
        )
        in_flight = GaugeMetricFamily(
            "aimp_gateway_bulkhead_in_flight",
            "Calls to the service in flight through its bulkhead.",
            labels=["service"],
        )
        for fuses in list(self._watched):
            for row in fuses.rows():
                labels = [row.service, row.instance_id]
                state.add_metric(labels, STATE_VALUE[row.view.state])
                failure.add_metric(labels, row.view.failure_rate_percent)
            for service in fuses.services():
                if service.bulkhead is not None:
                    in_flight.add_metric([service.service], service.bulkhead.in_flight)
        yield state
        yield failure
        yield in_flight

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


_COLLECTOR = _FuseCollector()
REGISTRY.register(_COLLECTOR)
