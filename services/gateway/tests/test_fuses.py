"""The per-service fuse registry: built lazily, rebuilt only where a policy changed."""

from __future__ import annotations

from aimp_core.registry_client import Instance
from aimp_gateway.breaker import BreakerState
from aimp_gateway.fuses import Fuses
from aimp_gateway.policy import BreakerPolicy, RetryPolicy, ServicePolicy

TRIP_AT_ONCE = BreakerPolicy(window_size=1, minimum_calls=1, open_wait_s=10)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _instance(n: int) -> Instance:
    return Instance(
        instance_id=f"svc-{n}", app="SVC", ip="127.0.0.1", port=9000 + n, status="UP", metadata={}
    )


def _trip(fuses: Fuses, policy: ServicePolicy) -> None:
    breaker = fuses.of("svc", policy).breaker
    assert breaker is not None
    permit = breaker.acquire()
    assert permit is not None
    breaker.record(permit, failed=True, duration_s=0)
    assert breaker.state is BreakerState.OPEN


def test_an_unrelated_change_keeps_an_open_breaker() -> None:
    """A new timeout or bulkhead limit leaves the open breaker (and the budget) as they are."""
    fuses = Fuses(clock=Clock())
    policy = ServicePolicy(breaker=TRIP_AT_ONCE)
    _trip(fuses, policy)
    before = fuses.of("svc", policy)
    after = fuses.of("svc", ServicePolicy(breaker=TRIP_AT_ONCE, timeout_s=3, max_concurrent=4))
    assert after.breaker is before.breaker and after.budget is before.budget
    assert after.bulkhead is not None and after.bulkhead.max_concurrent == 4


def test_a_changed_breaker_policy_starts_a_new_breaker() -> None:
    """New breaker settings give a fresh, closed breaker; no breaker policy gives none."""
    fuses = Fuses(clock=Clock())
    _trip(fuses, ServicePolicy(breaker=TRIP_AT_ONCE))
    changed = fuses.of("svc", ServicePolicy(breaker=BreakerPolicy(window_size=5)))
    assert changed.breaker is not None and changed.breaker.state is BreakerState.CLOSED
    assert fuses.of("svc", ServicePolicy(breaker=None)).breaker is None


def test_a_changed_retry_budget_is_rebuilt() -> None:
    """Changing the budget share builds a new budget with the new share."""
    fuses = Fuses(clock=Clock())
    first = fuses.of("svc", ServicePolicy()).budget
    second = fuses.of("svc", ServicePolicy(retry=RetryPolicy(budget_percent=5))).budget
    assert second is not first and second.percent == 5


def test_open_instance_breakers_are_skipped_and_pruned() -> None:
    """An instance whose breaker opened is left out of the usable ones; gone ones are forgotten."""
    clock = Clock()
    fuses = Fuses(clock=clock)
    service = fuses.of("svc", ServicePolicy(instance_breaker=TRIP_AT_ONCE))
    breakers = service.instances
    assert breakers is not None
    instances = tuple(_instance(n) for n in range(3))
    bad = breakers.of(instances[1])
    permit = bad.acquire()
    assert permit is not None
    bad.record(permit, failed=True, duration_s=0)
    assert breakers.usable(instances) == (instances[0], instances[2])
    assert breakers.retry_after_s(instances) == 10
    clock.now = 10  # the wait is over: it may take a trial call again
    assert breakers.usable(instances) == instances
    for n in [0, *range(3, 20)]:
        breakers.of(_instance(n))
    breakers.prune(instances[:1])
    assert [i for i, _ in breakers.items()] == ["svc-0"] and breakers.not_closed == 0
