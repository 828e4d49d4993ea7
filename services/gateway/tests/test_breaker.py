"""The fuses' pure parts: breaker state machine, retry budget and bulkhead (fake clocks)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from aimp_gateway.breaker import (
    BreakerState,
    CircuitBreaker,
    IllegalTransition,
    Permit,
    check_transition,
)
from aimp_gateway.bulkhead import Bulkhead, BulkheadError
from aimp_gateway.policy import BreakerPolicy
from aimp_gateway.retry_budget import RetryBudget
from aimp_gateway.windows import Totals

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Clock:
    """A fake monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


policies = st.builds(
    BreakerPolicy,
    window=st.sampled_from(["count", "time"]),
    window_size=st.integers(1, 8),
    minimum_calls=st.integers(1, 10),
    failure_rate_percent=st.sampled_from([1.0, 25.0, 50.0, 100.0]),
    slow_call_rate_percent=st.sampled_from([20.0, 50.0, 100.0]),
    slow_call_s=st.sampled_from([0.5, 2.0]),
    open_wait_s=st.sampled_from([0.0, 1.0, 2.5]),
    half_open_calls=st.integers(1, 4),
)


def exceeded(policy: BreakerPolicy, totals: Totals) -> bool:
    return (
        totals.failure_rate_percent >= policy.failure_rate_percent
        or totals.slow_rate_percent >= policy.slow_call_rate_percent
    )


class BreakerMachine(RuleBasedStateMachine):
    """Any interleaving of permits, outcomes, releases and time steps against a reference."""

    permits = Bundle("permits")

    @initialize(policy=policies)
    def setup(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.clock = Clock()
        #: Outcomes (time, failed, slow) counted since the window was last emptied.
        self.outcomes: list[tuple[float, bool, bool]] = []
        self.generation = 0
        self.open_until = math.inf
        #: Permits of the current generation not yet recorded or released.
        self.outstanding = 0
        #: The window holds half-open trials (all of them count), not closed-state calls.
        self.trial_window = False
        self.breaker = CircuitBreaker(policy, clock=self.clock, listener=self.on_transition)

    def on_transition(self, source: BreakerState, target: BreakerState) -> None:
        check_transition(source, target)  # the listener only ever sees legal ones
        self.generation += 1
        self.outstanding = 0
        if target is not OPEN:
            self.outcomes = []  # open keeps (and shows) the window that tripped it
            self.trial_window = target is HALF_OPEN
        if target is OPEN:
            self.open_until = self.clock.now + self.policy.open_wait_s

    def reference(self) -> Totals:
        """The window recomputed from scratch over every outcome since the last transition."""
        rows = self.outcomes
        if self.trial_window:
            pass  # every trial since half-open counts
        elif self.policy.window == "count":
            rows = rows[-self.policy.window_size :]
        else:
            now_s = math.floor(self.clock.now)
            rows = [r for r in rows if math.floor(r[0]) > now_s - self.policy.window_size]
        return Totals(len(rows), sum(r[1] for r in rows), sum(r[2] for r in rows))

    @rule(target=permits)
    def acquire(self):  # type: ignore[no-untyped-def]
        before = self.breaker.state
        permit = self.breaker.acquire()
        if before is OPEN and self.clock.now < self.open_until:
            assert permit is None and self.breaker.state is OPEN
        if before is CLOSED:
            assert permit is not None
        if self.breaker.state is HALF_OPEN and permit is None:
            done = len(self.outcomes)
            assert self.outstanding + done == self.policy.half_open_calls
        if permit is None:
            return multiple()
        if self.breaker.state is HALF_OPEN:
            self.outstanding += 1
        return (permit, self.generation)

    @rule(
        entry=consumes(permits),
        failed=st.booleans(),
        duration=st.sampled_from([0.0, 0.4, 1.0, 3.0]),
    )
    def record(self, entry: tuple[Permit, int], failed: bool, duration: float) -> None:
        permit, generation = entry
        state = self.breaker.state
        counted = generation == self.generation
        if counted:
            self.outcomes.append((self.clock.now, failed, duration > self.policy.slow_call_s))
            if state is HALF_OPEN:
                self.outstanding -= 1
        ref = self.reference()
        self.breaker.record(permit, failed=failed, duration_s=duration)
        after = self.breaker.state
        if not counted:
            assert after is state
        elif state is CLOSED:
            minimum = self.policy.minimum_calls
            if self.policy.window == "count":
                minimum = min(minimum, self.policy.window_size)
            should_open = ref.calls >= minimum and exceeded(self.policy, ref)
            assert after is (OPEN if should_open else CLOSED)
        elif ref.calls < self.policy.half_open_calls:
            assert after is HALF_OPEN
        else:
            assert after is (OPEN if exceeded(self.policy, ref) else CLOSED)

    @rule(entry=consumes(permits))
    def release(self, entry: tuple[Permit, int]) -> None:
        permit, generation = entry
        state = self.breaker.state
        if generation == self.generation and state is HALF_OPEN:
            self.outstanding -= 1
        self.breaker.release(permit)
        assert self.breaker.state is state

    @rule(dt=st.sampled_from([0.0, 0.3, 0.7, 1.0, 2.0, 5.0]))
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @precondition(lambda self: hasattr(self, "breaker"))
    @rule()
    def poll(self) -> None:
        before = self.breaker.state
        after = self.breaker.poll()
        if before is OPEN:
            assert after is (HALF_OPEN if self.clock.now >= self.open_until else OPEN)
        else:
            assert after is before

    @invariant()
    def rates_match_the_reference(self) -> None:
        if hasattr(self, "breaker"):
            assert self.breaker.totals() == self.reference()

    @invariant()
    def half_open_admits_at_most_its_trials(self) -> None:
        if hasattr(self, "breaker") and self.breaker.state is HALF_OPEN:
            in_flight = self.breaker.trials_in_flight
            assert in_flight == self.outstanding
            assert in_flight + len(self.outcomes) <= self.policy.half_open_calls

    @invariant()
    def open_waits_its_time(self) -> None:
        if hasattr(self, "breaker") and self.breaker.state is OPEN:
            expected = max(self.open_until - self.clock.now, 0.0)
            assert self.breaker.retry_after_s() == pytest.approx(expected)


BreakerMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
TestBreakerProperties = BreakerMachine.TestCase


def test_illegal_transitions_raise_a_clear_error() -> None:
    """Closed cannot go straight to half-open, nor open straight to closed."""
    with pytest.raises(IllegalTransition, match="cannot go from closed to half_open"):
        check_transition(CLOSED, HALF_OPEN)
    with pytest.raises(IllegalTransition, match="may only go to half_open"):
        check_transition(OPEN, CLOSED)
    check_transition(HALF_OPEN, CLOSED)


def test_a_failing_service_trips_then_recovers() -> None:
    """Failures past the threshold open the breaker; after the wait good trials close it."""
    clock = Clock()
    policy = BreakerPolicy(window_size=4, minimum_calls=4, open_wait_s=5, half_open_calls=2)
    breaker = CircuitBreaker(policy, clock=clock)
    for failed in (False, True, False, True):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, failed=failed, duration_s=0.01)
    assert breaker.state is OPEN and breaker.retry_after_s() == 5
    clock.now = 4.9
    assert breaker.acquire() is None
    clock.now = 5.0
    trials = [breaker.acquire(), breaker.acquire()]
    assert breaker.state is HALF_OPEN and breaker.acquire() is None
    for trial in trials:
        assert trial is not None
        breaker.record(trial, failed=False, duration_s=0.01)
    assert breaker.state is CLOSED


def test_a_released_trial_frees_its_place() -> None:
    """A half-open permit given back unused lets another trial through."""
    clock = Clock()
    policy = BreakerPolicy(window_size=1, minimum_calls=1, open_wait_s=0, half_open_calls=1)
    breaker = CircuitBreaker(policy, clock=clock)
    first = breaker.acquire()
    assert first is not None
    breaker.record(first, failed=True, duration_s=0)
    trial = breaker.acquire()
    assert trial is not None and breaker.acquire() is None
    breaker.release(trial)
    assert breaker.acquire() is not None


def test_slow_calls_trip_by_slow_rate() -> None:
    """Calls slower than slow_call_s open the breaker at the slow-call threshold."""
    policy = BreakerPolicy(window_size=2, minimum_calls=2, slow_call_s=1, slow_call_rate_percent=50)
    breaker = CircuitBreaker(policy, clock=Clock())
    for duration in (0.1, 1.5):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record(permit, failed=False, duration_s=duration)
    assert breaker.state is OPEN


def test_a_permit_cannot_be_used_twice() -> None:
    """Recording a permit twice is a programming error, not a silent double count."""
    breaker = CircuitBreaker(BreakerPolicy(), clock=Clock())
    permit = breaker.acquire()
    assert permit is not None
    breaker.record(permit, failed=False, duration_s=0)
    with pytest.raises(RuntimeError, match="used twice"):
        breaker.release(permit)


def test_nonsense_policy_is_refused() -> None:
    """A policy with a zero window or a rate above 100 % names what is wrong."""
    with pytest.raises(ValueError, match="window_size must be at least 1"):
        CircuitBreaker(BreakerPolicy(window_size=0), clock=Clock())
    with pytest.raises(ValueError, match="failure_rate_percent"):
        CircuitBreaker(BreakerPolicy(failure_rate_percent=150), clock=Clock())


# -- retry budget ----------------------------------------------------------------------

budget_ops = st.lists(
    st.one_of(
        st.just(("sent", 0.0)),
        st.just(("retry", 0.0)),
        st.tuples(st.just("advance"), st.sampled_from([0.2, 0.5, 1.0, 3.0, 11.0])),
    ),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(
    percent=st.sampled_from([0.0, 10.0, 20.0, 29.0]),
    reserve_per_s=st.sampled_from([0.0, 0.5, 1.0]),
    ops=budget_ops,
)
def test_retry_budget_never_exceeds_its_budget(
    percent: float, reserve_per_s: float, ops: list[tuple[str, float]]
) -> None:
    """A retry is allowed exactly when the reference recount of the window has room for it."""
    clock = Clock()
    budget = RetryBudget(percent=percent, min_retries_per_s=reserve_per_s, clock=clock)
    sent: list[float] = []
    retried: list[float] = []

    def in_window(times: list[float]) -> int:
        now_s = math.floor(clock.now)
        return sum(1 for t in times if math.floor(t) > now_s - budget.ttl_s)

    for op, dt in ops:
        if op == "sent":
            budget.sent()
            sent.append(clock.now)
        elif op == "advance":
            clock.now += dt
        else:
            allowance = reserve_per_s * budget.ttl_s + percent / 100 * in_window(sent)
            room = allowance - in_window(retried)
            allowed = budget.try_retry()
            assert allowed == (room >= 1 - 1e-9)
            if allowed:
                retried.append(clock.now)
                assert in_window(retried) <= allowance + 1e-9


def test_retry_budget_allows_a_share_of_traffic() -> None:
    """With 20 % and no reserve, 50 calls allow exactly 10 retries."""
    clock = Clock()
    budget = RetryBudget(percent=20, min_retries_per_s=0, clock=clock)
    for _ in range(50):
        budget.sent()
    assert sum(budget.try_retry() for _ in range(20)) == 10
    clock.now = 10.5  # every deposit and withdrawal has aged out
    assert not budget.try_retry()


# -- bulkhead --------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(limit=st.integers(1, 4), ops=st.lists(st.booleans(), max_size=100))
def test_bulkhead_never_exceeds_its_maximum(limit: int, ops: list[bool]) -> None:
    """Whatever the order of entries and exits, calls inside never exceed the maximum."""
    bulkhead = Bulkhead(limit)
    inside = 0
    for enter in ops:
        if enter:
            ok = bulkhead.try_enter()
            assert ok == (inside < limit)
            inside += ok
        elif inside:
            bulkhead.leave()
            inside -= 1
        else:
            with pytest.raises(BulkheadError):
                bulkhead.leave()
        assert 0 <= bulkhead.in_flight == inside <= limit
