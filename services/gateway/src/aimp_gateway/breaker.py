"""A circuit breaker with Resilience4j's semantics: a pure state machine, clock injected.

States and the only transitions allowed (anything else raises
:class:`IllegalTransition`):

- ``CLOSED`` -> ``OPEN``: at least ``minimum_calls`` outcomes are in the sliding
  window (count- or time-based; a count window's minimum is capped at its size,
  as Resilience4j does) and the failure rate or the slow-call rate reaches its
  threshold. Every call is permitted while closed.
- ``OPEN`` -> ``HALF_OPEN``: ``open_wait_s`` has passed; seen lazily, at the
  next :meth:`CircuitBreaker.acquire` or :meth:`CircuitBreaker.poll`. Every
  call is refused while open.
- ``HALF_OPEN`` -> ``CLOSED`` or ``OPEN``: exactly ``half_open_calls`` trial
  calls are let through (more are refused until those finish); once all have
  an outcome, their rates decide. A trial permit given back unused
  (:meth:`CircuitBreaker.release`) frees its place for another trial.

Each state change starts a new generation: outcomes of calls permitted under an
earlier one (a slow call that finishes after the breaker opened) are dropped,
so they cannot count as half-open trials. As in Resilience4j, half-open and
closed start from an empty window, and an open breaker keeps (and shows) the
window that tripped it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from aimp_gateway.policy import BreakerPolicy
from aimp_gateway.windows import CountWindow, TimeWindow, Totals, Window

Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

#: The value of each state in the Prometheus gauge (Resilience4j's numbering).
STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2}

_ALLOWED: dict[BreakerState, frozenset[BreakerState]] = {
    BreakerState.CLOSED: frozenset({BreakerState.OPEN}),
    BreakerState.OPEN: frozenset({BreakerState.HALF_OPEN}),
    BreakerState.HALF_OPEN: frozenset({BreakerState.CLOSED, BreakerState.OPEN}),
}


class IllegalTransition(RuntimeError):
    """A breaker was asked to change state in a way its state machine does not allow."""

    def __init__(self, source: BreakerState, target: BreakerState) -> None:
        allowed = ", ".join(sorted(_ALLOWED[source])) or "nothing"
        super().__init__(
            f"a circuit breaker cannot go from {source} to {target}; from {source} it may "
            f"only go to {allowed}"
        )
        self.source, self.target = source, target


def check_transition(source: BreakerState, target: BreakerState) -> None:
    """Raise :class:`IllegalTransition` unless ``source -> target`` is allowed."""
    if target not in _ALLOWED[source]:
        raise IllegalTransition(source, target)


class Permit:
    """Leave to make one call, given by :meth:`CircuitBreaker.acquire`; used once."""

    __slots__ = ("generation", "used")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.used = False


@dataclass(frozen=True, slots=True)
class BreakerView:
    """What an operator sees of one breaker."""

    state: BreakerState
    calls: int
    failed_calls: int
    slow_calls: int
    failure_rate_percent: float
    slow_rate_percent: float
    #: Seconds until an open breaker lets trial calls through (0 when not open).
    retry_after_s: float
    #: Trial calls under way (half-open only).
    trials_in_flight: int


Listener = Callable[[BreakerState, BreakerState], None]


def _new_window(policy: BreakerPolicy) -> Window:
    if policy.window == "time":
        return TimeWindow(policy.window_size)
    return CountWindow(policy.window_size)


class CircuitBreaker:
    """One breaker; not thread-safe (the gateway calls it from its one event loop)."""

    __slots__ = (
        "_clock",
        "_generation",
        "_listener",
        "_minimum",
        "_open_until",
        "_state",
        "_trials_done",
        "_trials_in_flight",
        "_window",
        "policy",
    )

    def __init__(
        self, policy: BreakerPolicy, *, clock: Clock, listener: Listener | None = None
    ) -> None:
        _validate(policy)
        self.policy = policy
        self._clock = clock
        self._listener = listener
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._open_until = 0.0
        self._trials_in_flight = 0
        self._trials_done = 0
        self._window: Window = _new_window(policy)
        self._minimum = _closed_minimum(policy)

    @property
    def state(self) -> BreakerState:
        """The state as last changed (OPEN until polled, even once the wait is over)."""
        return self._state

    @property
    def trials_in_flight(self) -> int:
        """Half-open trial calls permitted and not yet recorded or released."""
        return self._trials_in_flight

    def poll(self) -> BreakerState:
        """The state now: moves an open breaker whose wait has passed to half-open."""
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def would_permit(self) -> bool:
        """Whether :meth:`acquire` would give a permit now (changes nothing)."""
        state = self._state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return self._clock() >= self._open_until
        return self._trials_in_flight + self._trials_done < self.policy.half_open_calls

    def acquire(self) -> Permit | None:
        """A permit for one call, or None when the breaker refuses it."""
        state = self._state
        if state is _CLOSED:  # the hot path: one check, one small object
            return Permit(self._generation)
        if state is _OPEN:
            state = self.poll()
            if state is _OPEN:
                return None
        if self._trials_in_flight + self._trials_done >= self.policy.half_open_calls:
            return None
        self._trials_in_flight += 1
        return Permit(self._generation)

    def release(self, permit: Permit) -> None:
        """The permitted call was never made: give its place back, record nothing."""
        if not self._use(permit):
            return
        if self._state is BreakerState.HALF_OPEN:
            self._trials_in_flight -= 1

    def record(self, permit: Permit, *, failed: bool, duration_s: float) -> None:
        """The permitted call ended: a failure or not, and how long it took."""
        if permit.used:
            raise RuntimeError("a breaker permit was used twice; record or release it once")
        permit.used = True
        if permit.generation != self._generation:
            return  # permitted under an earlier state: its outcome no longer counts
        policy = self.policy
        calls, failures, slows = self._window.record(
            failed, duration_s > policy.slow_call_s, self._clock()
        )
        if self._state is _CLOSED:
            if calls >= self._minimum and self._exceeded(calls, failures, slows):
                self._transition(BreakerState.OPEN)
            return
        # Half-open: the trial's outcome is in; decide once every trial has one.
        self._trials_in_flight -= 1
        self._trials_done += 1
        if self._trials_done >= policy.half_open_calls:
            exceeded = self._exceeded(calls, failures, slows)
            self._transition(BreakerState.OPEN if exceeded else BreakerState.CLOSED)

    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets trial calls through; 0 when not open."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(self._open_until - self._clock(), 0.0)

    def totals(self) -> Totals:
        """The outcomes in the current state's window."""
        return self._window.totals(self._clock())

    def view(self) -> BreakerView:
        """State, rates and wait, as of now (an elapsed open wait moves it to half-open)."""
        state = self.poll()
        totals = self.totals()
        return BreakerView(
            state=state,
            calls=totals.calls,
            failed_calls=totals.failed,
            slow_calls=totals.slow,
            failure_rate_percent=round(totals.failure_rate_percent, 3),
            slow_rate_percent=round(totals.slow_rate_percent, 3),
            retry_after_s=round(self.retry_after_s(), 3),
            trials_in_flight=self._trials_in_flight,
        )

    # -- internals ----------------------------------------------------------------------

    def _use(self, permit: Permit) -> bool:
        """Mark ``permit`` used; False when it belongs to an earlier generation."""
        if permit.used:
            raise RuntimeError("a breaker permit was used twice; record or release it once")
        permit.used = True
        return permit.generation == self._generation

    def _exceeded(self, calls: int, failures: int, slows: int) -> bool:
        """Does either rate reach its threshold? (``calls`` > 0; the same division as
        :class:`~aimp_gateway.windows.Totals`, so views and decisions agree)."""
        policy = self.policy
        return (
            100.0 * failures / calls >= policy.failure_rate_percent
            or 100.0 * slows / calls >= policy.slow_call_rate_percent
        )

    def _transition(self, target: BreakerState) -> None:
        source = self._state
        check_transition(source, target)
        self._state = target
        self._generation += 1
        self._trials_in_flight = 0
        self._trials_done = 0
        if target is BreakerState.OPEN:
            self._open_until = self._clock() + self.policy.open_wait_s
        elif target is BreakerState.HALF_OPEN:
            self._window = CountWindow(self.policy.half_open_calls)
        else:
            self._window = _new_window(self.policy)
        if self._listener is not None:
            self._listener(source, target)


def _closed_minimum(policy: BreakerPolicy) -> int:
    """Calls needed before a closed breaker judges (a count window caps it at its size)."""
    if policy.window == "count":
        return min(policy.minimum_calls, policy.window_size)
    return policy.minimum_calls


def _validate(policy: BreakerPolicy) -> None:
    problems = []
    if policy.window not in ("count", "time"):
        problems.append(f"window must be 'count' or 'time', not {policy.window!r}")
    if policy.window_size < 1:
        problems.append("window_size must be at least 1")
    if policy.minimum_calls < 1:
        problems.append("minimum_calls must be at least 1")
    if policy.half_open_calls < 1:
        problems.append("half_open_calls must be at least 1")
    if policy.open_wait_s < 0 or policy.slow_call_s < 0:
        problems.append("open_wait_s and slow_call_s must not be negative")
    for name in ("failure_rate_percent", "slow_call_rate_percent"):
        value = getattr(policy, name)
        if not 0 < value <= 100:
            problems.append(f"{name} must be above 0 and at most 100, not {value}")
    if problems:
        raise ValueError("invalid breaker policy: " + "; ".join(problems))
