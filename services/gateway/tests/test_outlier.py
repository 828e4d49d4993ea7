"""Outlier ejection (pure, fake clock): thresholds, growing ejection times, the cap, probes."""

from __future__ import annotations

import itertools
from typing import ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aimp_gateway.outlier import Failure, OutlierDetector, OutlierPolicy

POLICY = OutlierPolicy()
kinds = st.sampled_from(list(Failure))
policies = st.builds(
    OutlierPolicy,
    consecutive_connect_failures=st.integers(1, 4),
    consecutive_gateway_errors=st.integers(1, 4),
    consecutive_5xx=st.integers(1, 6),
    base_ejection_s=st.floats(0.1, 30),
    max_ejection_s=st.floats(0.1, 300),
    max_ejected_percent=st.floats(0, 100),
)


def test_one_refused_connection_ejects_for_the_base_time() -> None:
    """With the defaults a single connect failure ejects (one of two instances) for 5 s."""
    d = OutlierDetector(POLICY)
    ejection = d.failure("a", "IRIS", Failure.CONNECT, up=2, now=100.0)
    assert ejection is not None
    assert (ejection.duration_s, ejection.until, ejection.times) == (5.0, 105.0, 1)
    assert d.is_ejected("a") and d.ejected_keys() == {"a"} and d.ejected_count("IRIS") == 1


@given(threshold=st.integers(1, 8), successes_at=st.sets(st.integers(0, 20)))
def test_5xx_ejects_only_after_threshold_in_a_row(threshold: int, successes_at: set[int]) -> None:
    """5xx answers eject on the threshold-th in a row; any success in between starts over."""
    d = OutlierDetector(OutlierPolicy(consecutive_5xx=threshold))
    run = 0
    for step in range(21):
        if step in successes_at:
            d.success("a", float(step))
            run = 0
            continue
        run += 1
        ejection = d.failure("a", "IRIS", Failure.HTTP_5XX, up=10, now=float(step))
        assert (ejection is not None) == (run == threshold)
        if ejection is not None:
            return


@given(kind=kinds, other=kinds)
def test_each_kind_counts_on_its_own(kind: Failure, other: Failure) -> None:
    """Failures of another kind neither complete nor reset a kind's run."""
    policy = OutlierPolicy(
        consecutive_connect_failures=3, consecutive_gateway_errors=3, consecutive_5xx=3
    )
    d = OutlierDetector(policy)
    assert d.failure("a", "S", kind, up=10, now=0) is None
    assert d.failure("a", "S", kind, up=10, now=0) is None
    if other is not kind:
        assert d.failure("a", "S", other, up=10, now=0) is None
    assert d.failure("a", "S", kind, up=10, now=0) is not None


@given(policy=policies, repeats=st.integers(1, 12))
def test_ejection_time_doubles_up_to_the_max(policy: OutlierPolicy, repeats: int) -> None:
    """Each failed probe ejects again for twice as long, never beyond the maximum."""
    d = OutlierDetector(policy)
    now = 0.0
    for _ in range(policy.consecutive_connect_failures):  # reach the connect threshold
        first = d.failure("a", "S", Failure.CONNECT, up=2, now=now)
    assert first is not None  # refused: one of two may go, whatever the share
    durations = [first.duration_s]
    for _ in range(repeats):
        now = durations[-1] + now
        assert d.due(now) == ["a"]
        again = d.probe_failed("a", now)
        assert again is not None
        durations.append(again.duration_s)
    expected = [
        min(policy.base_ejection_s * 2**i, policy.max_ejection_s) for i in range(repeats + 1)
    ]
    assert durations == expected
    assert all(a <= b for a, b in itertools.pairwise(durations))


@given(wait=st.floats(0, 20))
def test_not_due_before_its_time_and_out_until_probed(wait: float) -> None:
    """An ejection ends only at its time; then the instance stays out until a probe passes."""
    d = OutlierDetector(POLICY)
    d.failure("a", "S", Failure.CONNECT, up=4, now=0.0)
    due = d.due(wait)
    assert due == (["a"] if wait >= 5.0 else [])
    assert d.is_ejected("a")
    if due:
        assert d.next_due() is None  # probing: not due a second time
        assert d.probe_succeeded("a", wait)
        assert not d.is_ejected("a") and d.ejected_count("S") == 0


@given(up=st.integers(1, 40), percent=st.floats(0, 100), kind=st.sampled_from(["5xx", "gw"]))
def test_uncertain_failures_eject_at_most_the_allowed_share(
    up: int, percent: float, kind: str
) -> None:
    """When all instances answer 5xx or time out, at most the allowed share is ejected."""
    policy = OutlierPolicy(max_ejected_percent=percent, consecutive_5xx=1)
    failure = Failure.HTTP_5XX if kind == "5xx" else Failure.GATEWAY
    d = OutlierDetector(policy)
    for _round in range(policy.consecutive_gateway_errors):
        for i in range(up):
            d.failure(i, "S", failure, up=up, now=0.0)
    ejected = d.ejected_count("S")
    assert ejected < up
    assert ejected * 100 <= up * percent
    # and the cap is reached exactly: one more would break it
    assert not policy.may_eject(ejected=ejected, up=up, kind=failure)


@given(up=st.integers(1, 40), percent=st.floats(0, 100))
def test_refused_connections_eject_all_but_the_last(up: int, percent: float) -> None:
    """Refusing listeners cannot serve: all of them go, whatever the share, but never the last."""
    d = OutlierDetector(OutlierPolicy(max_ejected_percent=percent))
    for i in range(up):
        d.failure(i, "S", Failure.CONNECT, up=up, now=0.0)
    assert d.ejected_count("S") == up - 1
    assert not d.is_ejected(up - 1)


def test_a_lone_instance_is_never_ejected() -> None:
    """The only UP instance of a service stays in rotation however often it fails."""
    d = OutlierDetector(OutlierPolicy(max_ejected_percent=100))
    for _ in range(10):
        assert d.failure("a", "S", Failure.CONNECT, up=1, now=0.0) is None
    assert not d.is_ejected("a")


def test_failures_of_an_ejected_instance_change_nothing() -> None:
    """Calls that were under way when their instance was ejected do not extend the ejection."""
    d = OutlierDetector(POLICY)
    first = d.failure("a", "S", Failure.CONNECT, up=2, now=0.0)
    assert first is not None
    assert d.failure("a", "S", Failure.CONNECT, up=2, now=1.0) is None
    assert d.due(5.0) == ["a"]


def test_ejection_count_starts_over_after_a_healthy_max_ejection_time() -> None:
    """After staying healthy for the maximum ejection time, the next ejection is base length."""
    d = OutlierDetector(POLICY)
    d.failure("a", "S", Failure.CONNECT, up=2, now=0.0)
    d.due(5.0)
    again = d.probe_failed("a", 5.0)
    assert again is not None and again.duration_s == 10.0
    d.due(15.0)
    assert d.probe_succeeded("a", 15.0)
    d.success("a", 20.0)  # healthy, but not for long
    soon = d.failure("a", "S", Failure.CONNECT, up=2, now=21.0)
    assert soon is not None and soon.duration_s == 20.0
    d.due(41.0)
    d.probe_succeeded("a", 41.0)
    d.success("a", 41.0 + 60.0)
    later = d.failure("a", "S", Failure.CONNECT, up=2, now=102.0)
    assert later is not None and later.duration_s == 5.0


def test_reset_and_retain_forget_instances() -> None:
    """A re-registered instance starts fresh; instances gone from the registry are forgotten."""
    d = OutlierDetector(POLICY)
    d.failure("a", "S", Failure.CONNECT, up=4, now=0.0)
    d.failure("b", "S", Failure.CONNECT, up=4, now=0.0)
    assert d.reset("a") is True and not d.is_ejected("a")
    d.retain({"a"})
    assert d.ejected_keys() == frozenset() and d.ejected_count("S") == 0
    assert d.state("b") is None


class Machine(RuleBasedStateMachine):
    """Random outcomes, clock steps and probe results against a model of the counters."""

    SERVICES: ClassVar[dict[str, int]] = {"A": 2, "B": 3, "C": 5}

    def __init__(self) -> None:
        super().__init__()
        self.policy = OutlierPolicy(consecutive_gateway_errors=2, consecutive_5xx=3)
        self.d = OutlierDetector(self.policy)
        self.now = 0.0
        self.runs: dict[tuple[str, int], dict[Failure, int]] = {}
        self.keys = [(s, i) for s, n in self.SERVICES.items() for i in range(n)]

    @rule(index=st.integers(0, 9), kind=kinds)
    def fail(self, index: int, kind: Failure) -> None:
        key = self.keys[index]
        service = key[0]
        was_out = self.d.is_ejected(key)
        may = self.policy.may_eject(
            ejected=self.d.ejected_count(service), up=self.SERVICES[service], kind=kind
        )
        run = self.runs.setdefault(key, {})
        ejection = self.d.failure(key, service, kind, up=self.SERVICES[service], now=self.now)
        if was_out:
            assert ejection is None
            return
        run[kind] = run.get(kind, 0) + 1
        reached = run[kind] >= self.policy.threshold(kind)
        assert (ejection is not None) == (reached and may)
        if ejection is not None:
            assert ejection.duration_s == self.policy.ejection_s(ejection.times)
            assert ejection.until == self.now + ejection.duration_s
            run.clear()

    @rule(index=st.integers(0, 9))
    def succeed(self, index: int) -> None:
        key = self.keys[index]
        self.d.success(key, self.now)
        if not self.d.is_ejected(key):
            self.runs.pop(key, None)

    @rule(step=st.floats(0, 30))
    def tick(self, step: float) -> None:
        self.now += step

    @precondition(lambda self: self.d.next_due() is not None)
    @rule(ok=st.booleans())
    def probe(self, ok: bool) -> None:
        for key in self.d.due(self.now):
            if ok:
                assert self.d.probe_succeeded(key, self.now)
                self.runs.pop(key, None)
            else:
                again = self.d.probe_failed(key, self.now)
                assert again is not None and again.until > self.now

    @invariant()
    def never_the_last(self) -> None:
        for service, up in self.SERVICES.items():
            assert self.d.ejected_count(service) < up

    @invariant()
    def views_agree(self) -> None:
        out = self.d.ejected_keys()
        assert {k for k in self.keys if self.d.is_ejected(k)} == set(out)
        due = self.d.next_due()
        assert due is None or due <= self.now + self.policy.max_ejection_s


Machine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_outlier_state_machine = Machine.TestCase
