"""The router: registry changes and outcomes in, a routing table out (fake clock, real probe)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from prometheus_client import REGISTRY

from aimp_core.net import free_port
from aimp_core.registry_client import META_REVISION, META_WEIGHT, META_ZONE, Instance
from aimp_gateway.outlier import Failure, OutlierPolicy
from aimp_gateway.policy import LbAlgorithm, RevisionWeight, ServicePolicy
from aimp_gateway.revisions import UnknownRevision
from aimp_gateway.router import Candidates, Router
from aimp_gateway.routing import key_of
from aimp_gateway.schemas import ServiceRouting
from aimp_gateway.upstream import tcp_accepts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _inst(n: int, *, app: str = "IRIS", status: str = "UP", port: int | None = None) -> Instance:
    return Instance(f"{app.lower()}-{n}", app, "127.0.0.1", port or 20000 + n, status)


def _ids(router: Router, app: str = "IRIS") -> list[str]:
    return [i.instance_id for i in router.table.instances(app)]


async def _probe(instance: Instance) -> bool:
    return await tcp_accepts(instance.ip, instance.port, timeout_s=1.0)


def _router(clock: Clock, **policy: float) -> Router:
    return Router(OutlierPolicy(**policy), probe=_probe, clock=clock)  # type: ignore[arg-type]


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_only_up_instances_are_routable() -> None:
    """STARTING, OUT_OF_SERVICE and DOWN instances get no calls; apps stay known."""
    router = _router(Clock())
    router.update(
        [_inst(1), _inst(2, status="STARTING"), _inst(3, status="OUT_OF_SERVICE"), _inst(4)]
    )
    assert _ids(router) == ["iris-1", "iris-4"]
    router.update([_inst(1, status="DOWN"), _inst(4, status="OUT_OF_SERVICE")])
    assert _ids(router) == [] and "IRIS" in router.table.known


def test_connect_failure_ejects_at_once_and_counts() -> None:
    """One refused connection takes the instance out of the table and is counted."""
    router = _router(Clock())
    before = _metric("aimp_gateway_outlier_ejections_total", service="iris", reason="connect")
    router.update([_inst(1), _inst(2), _inst(3)])
    table = router.table
    router.failed(_inst(2), Failure.CONNECT)
    assert router.table is not table  # a new snapshot, the old one untouched
    assert [i.instance_id for i in table.instances("IRIS")] == ["iris-1", "iris-2", "iris-3"]
    assert _ids(router) == ["iris-1", "iris-3"]
    after = _metric("aimp_gateway_outlier_ejections_total", service="iris", reason="connect")
    assert after == before + 1
    assert _metric("aimp_gateway_outlier_ejected", service="iris") == 1
    state = router.describe()["iris"]
    assert state["ejected"] == 1
    assert [r["routable"] for r in state["instances"]] == [True, False, True]


def test_five_5xx_answers_eject_and_a_success_resets() -> None:
    """Four 5xx, a 200, four 5xx: still in; the fifth 5xx in a row ejects."""
    router = _router(Clock())
    router.update([_inst(1), _inst(2)])
    for status in [500] * 4 + [200] + [500, 502, 504, 507]:
        router.answered(_inst(1), status)
    assert _ids(router) == ["iris-1", "iris-2"]
    router.answered(_inst(1), 500)
    assert _ids(router) == ["iris-2"]


def test_503_load_shedding_never_ejects() -> None:
    """A sidecar answering 503 (queue full, draining) stays in rotation however often."""
    router = _router(Clock())
    router.update([_inst(1), _inst(2)])
    for _ in range(20):
        router.answered(_inst(1), 503)
    assert _ids(router) == ["iris-1", "iris-2"]


def test_leaving_up_or_a_new_address_clears_the_ejection() -> None:
    """An ejected instance that re-registers (new address, or back to UP) is routable again."""
    router = _router(Clock())
    router.update([_inst(1), _inst(2)])
    router.failed(_inst(1), Failure.CONNECT)
    assert _ids(router) == ["iris-2"]
    router.update([_inst(1, port=30001), _inst(2)])  # same id, new port: a new process
    assert _ids(router) == ["iris-1", "iris-2"]
    router.failed(_inst(1, port=30001), Failure.CONNECT)
    router.update([_inst(1, status="STARTING"), _inst(2)])
    router.update([_inst(1), _inst(2)])
    assert _ids(router) == ["iris-1", "iris-2"]


def test_failures_of_instances_not_up_are_ignored() -> None:
    """A failed call to an instance the registry no longer lists as UP ejects nothing."""
    router = _router(Clock())
    router.update([_inst(1), _inst(2), _inst(3, status="OUT_OF_SERVICE")])
    router.failed(_inst(3), Failure.CONNECT)
    assert router.detector.ejected_keys() == frozenset()


async def test_probe_reinstates_a_listening_instance_and_re_ejects_a_dead_one() -> None:
    """When the ejection is up, a live port returns to rotation; a dead one is out for longer."""
    clock = Clock()
    router = _router(clock)
    listener = socket.create_server(("127.0.0.1", 0))
    live_port = listener.getsockname()[1]
    live, dead, other = _inst(1, port=live_port), _inst(2, port=free_port()), _inst(3)
    other2 = _inst(4)
    try:
        router.update([live, dead, other, other2])
        router.failed(live, Failure.CONNECT)
        router.failed(dead, Failure.CONNECT)
        assert _ids(router) == ["iris-3", "iris-4"]
        clock.now += 4.9
        await router.probe_due()
        assert _ids(router) == ["iris-3", "iris-4"]  # not yet
        clock.now += 0.1
        await router.probe_due()
        assert _ids(router) == ["iris-1", "iris-3", "iris-4"]
        state = {r["instance_id"]: r for r in router.describe()["iris"]["instances"]}
        assert state["iris-2"]["ejections_in_a_row"] == 2
        assert state["iris-2"]["ejected_for_s"] == 10.0
    finally:
        listener.close()


async def test_prober_task_runs_on_its_own() -> None:
    """Started, the prober brings an instance back after a short ejection without help."""
    router = Router(OutlierPolicy(base_ejection_s=0.2), probe=_probe)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    router.start()
    try:
        router.update([_inst(1, port=port), _inst(2)])
        router.failed(_inst(1, port=port), Failure.CONNECT)
        assert _ids(router) == ["iris-2"]
        for _ in range(40):
            await asyncio.sleep(0.05)
            if len(_ids(router)) == 2:
                break
        assert _ids(router) == ["iris-1", "iris-2"]
    finally:
        await router.stop()
        listener.close()


# -- the data plane's API: candidates, choose, sent / answered / failed -------------------


class Draws:
    """A seeded random source the router draws from (injected randomness)."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)

    def __call__(self) -> float:
        return self.rng.random()


def _lb_router(clock: Clock | None = None, *, zone: str | None = None, seed: int = 7) -> Router:
    return Router(
        OutlierPolicy(), probe=_probe, clock=clock or Clock(), zone=zone, rand=Draws(seed)
    )


def _meta(n: int, *, status: str = "UP", port: int | None = None, **meta: str) -> Instance:
    keys = {"revision": META_REVISION, "zone": META_ZONE, "weight": META_WEIGHT}
    return Instance(
        f"iris-{n}",
        "IRIS",
        "127.0.0.1",
        port or 20000 + n,
        status,
        {keys[k]: v for k, v in meta.items()},
    )


LO = ServicePolicy(lb=LbAlgorithm.LEAST_OUTSTANDING)
RR = ServicePolicy(lb=LbAlgorithm.ROUND_ROBIN)
WRR = ServicePolicy(lb=LbAlgorithm.WEIGHTED)


def _cids(c: Candidates) -> list[str]:
    return [i.instance_id for i in c.instances]


def test_candidates_are_the_routable_instances_or_none() -> None:
    """No split: every routable instance; unknown app or none UP: empty candidates."""
    router = _lb_router()
    router.update(
        [_meta(1), _meta(2), _meta(3, status="DOWN"), _inst(1, app="OTHER", status="DOWN")]
    )
    c = router.candidates("IRIS", LO, None)
    assert c.revision == "" and _cids(c) == ["iris-1", "iris-2"]
    assert router.candidates("NOPE", LO, None).instances == ()
    assert router.candidates("OTHER", LO, None).instances == ()
    assert router.candidates("IRIS", LO, None) is c  # precomputed, not rebuilt per call


def test_zone_preference_while_any_local_instance_is_routable() -> None:
    """A zone-aware policy uses only same-zone instances while one is routable, else all."""
    router = _lb_router(zone="eu-1")
    router.update([_meta(1, zone="eu-1"), _meta(2, zone="eu-2"), _meta(3), _meta(4, zone="eu-1")])
    assert _cids(router.candidates("IRIS", LO, None)) == ["iris-1", "iris-4"]
    no_pref = ServicePolicy(zone_aware=False)
    assert _cids(router.candidates("IRIS", no_pref, None)) == [
        "iris-1",
        "iris-2",
        "iris-3",
        "iris-4",
    ]
    router.failed(_meta(1, zone="eu-1"), Failure.CONNECT)
    assert _cids(router.candidates("IRIS", LO, None)) == ["iris-4"]
    router.failed(_meta(4, zone="eu-1"), Failure.CONNECT)
    assert _cids(router.candidates("IRIS", LO, None)) == ["iris-2", "iris-3"]


def test_no_gateway_zone_means_no_preference() -> None:
    """A gateway without a zone spreads over every zone."""
    router = _lb_router()
    router.update([_meta(1, zone="eu-1"), _meta(2, zone="eu-2")])
    assert _cids(router.candidates("IRIS", LO, None)) == ["iris-1", "iris-2"]


def test_canary_split_through_the_router() -> None:
    """At 10 % canary weight, 10,000 calls send 10 % +- 1.5 % to the canary's instances."""
    router = _lb_router(seed=11)
    router.update([_meta(1, revision="v1"), _meta(2, revision="v1"), _meta(3, revision="v2")])
    policy = ServicePolicy(revisions=(RevisionWeight("v1", 90), RevisionWeight("v2", 10)))
    counts: Counter[str] = Counter()
    for _ in range(10_000):
        c = router.candidates("IRIS", policy, None)
        inst = router.choose("IRIS", c, policy)
        assert inst in c.instances and inst.metadata[META_REVISION] == c.revision
        counts[c.revision] += 1
    assert 850 <= counts["v2"] <= 1150


def test_pin_wins_and_unknown_pin_is_refused() -> None:
    """The pin header's revision is used whatever the weights; an unknown one raises 404."""
    router = _lb_router()
    router.update(
        [
            _meta(1, revision="v1"),
            _meta(2, revision="v2"),
            _meta(3, revision="v3", status="STARTING"),
        ]
    )
    policy = ServicePolicy(revisions=(RevisionWeight("v1", 100), RevisionWeight("v2", 0)))
    for _ in range(20):
        assert _cids(router.candidates("IRIS", policy, "v2")) == ["iris-2"]
    pinned_down = router.candidates("IRIS", policy, "v3")  # known, but nothing routable
    assert pinned_down.revision == "v3" and pinned_down.instances == ()
    with pytest.raises(UnknownRevision, match="'v1', 'v2', 'v3'"):
        router.candidates("IRIS", policy, "v9")


def test_canary_without_instances_falls_back() -> None:
    """A weighted canary whose only pod is ejected sends all calls to the stable revision."""
    router = _lb_router()
    router.update([_meta(1, revision="v1"), _meta(2, revision="v1"), _meta(3, revision="v2")])
    router.failed(_meta(3, revision="v2"), Failure.CONNECT)
    policy = ServicePolicy(revisions=(RevisionWeight("v1", 50), RevisionWeight("v2", 50)))
    assert {router.candidates("IRIS", policy, None).revision for _ in range(50)} == {"v1"}


def test_round_robin_and_weighted_choices() -> None:
    """Round robin takes turns; weighted gives each instance its aimp.weight share exactly."""
    router = _lb_router()
    router.update([_meta(1, weight="3"), _meta(2), _meta(3, weight="bogus")])
    c = router.candidates("IRIS", RR, None)
    assert [router.choose("IRIS", c, RR).instance_id for _ in range(6)] == [
        "iris-1",
        "iris-2",
        "iris-3",
        "iris-1",
        "iris-2",
        "iris-3",
    ]
    picks = Counter(router.choose("IRIS", c, WRR).instance_id for _ in range(50))
    assert picks == {"iris-1": 30, "iris-2": 10, "iris-3": 10}


def test_least_outstanding_avoids_busy_and_slow_instances() -> None:
    """With calls in flight on one instance and another slow, P2C picks the idle fast one."""
    clock = Clock()
    router = _lb_router(clock)
    insts = [_meta(1), _meta(2), _meta(3)]
    router.update(insts)
    for inst, latency in zip(insts, (0.01, 0.5, 0.01), strict=True):
        router.sent(inst)
        router.answered(inst, 200, latency_s=latency)
    for _ in range(3):
        router.sent(insts[0])
    c = router.candidates("IRIS", LO, None)
    picks = Counter(router.choose("IRIS", c, LO).instance_id for _ in range(300))
    assert picks["iris-3"] > picks["iris-1"] and picks["iris-3"] > picks["iris-2"]
    assert set(picks) <= {"iris-1", "iris-2", "iris-3"}


def test_outstanding_and_latency_are_visible() -> None:
    """describe() and /metrics show calls in flight and the latency estimate per instance."""
    router = _lb_router()
    router.update([_meta(1, zone="eu-1", revision="v1", weight="2"), _meta(2)])
    router.sent(_meta(1))
    router.sent(_meta(1))
    router.answered(_meta(1), 200, latency_s=0.25)
    rows = {r["instance_id"]: r for r in router.describe()["iris"]["instances"]}
    assert rows["iris-1"]["outstanding"] == 1
    assert rows["iris-1"]["latency_ewma_ms"] == 250.0
    assert rows["iris-1"]["zone"] == "eu-1" and rows["iris-1"]["revision"] == "v1"
    assert rows["iris-1"]["weight"] == 2
    assert rows["iris-2"]["outstanding"] == 0 and rows["iris-2"]["latency_ewma_ms"] is None
    public = ServiceRouting.model_validate(router.describe()["iris"])  # the admin view's schema
    assert public.instances[0].outstanding == 1 and public.instances[0].latency_ewma_ms == 250.0
    labels = {"service": "iris", "instance": "iris-1"}
    assert _metric("aimp_gateway_instance_outstanding", **labels) == 1
    assert _metric("aimp_gateway_instance_latency_ewma_seconds", **labels) == 0.25


def test_answered_keeps_outlier_behaviour_with_bookkeeping() -> None:
    """Five 5xx still eject, 503s never do, and every end brings the count back to 0."""
    router = _lb_router()
    router.update([_meta(1), _meta(2)])
    for _ in range(20):
        router.sent(_meta(1))
        router.answered(_meta(1), 503, latency_s=0.01)
    assert _cids(router.candidates("IRIS", LO, None)) == ["iris-1", "iris-2"]
    for _ in range(5):
        router.sent(_meta(1))
        router.answered(_meta(1), 500, latency_s=0.01)
    assert _cids(router.candidates("IRIS", LO, None)) == ["iris-2"]
    assert all(load.outstanding == 0 for load in router.loads.values())


def test_ends_without_a_send_never_go_negative() -> None:
    """An answer or failure reported without a send (old callers) leaves the count at 0."""
    router = _lb_router()
    router.update([_meta(1), _meta(2)])
    router.answered(_meta(1), 200)
    router.failed(_meta(2), Failure.GATEWAY)
    assert [load.outstanding for load in router.loads.values()] == [0, 0]


def test_a_call_in_flight_outlives_its_instance() -> None:
    """An instance that leaves mid-call keeps its counter until the call ends, then is dropped."""
    router = _lb_router()
    router.update([_meta(1), _meta(2)])
    router.sent(_meta(1))
    router.update([_meta(2)])
    assert router.loads[("IRIS", "iris-1")].outstanding == 1
    router.answered(_meta(1), 200, latency_s=0.1)
    assert ("IRIS", "iris-1") not in router.loads


def test_choose_other_skips_the_failed_and_the_ejected() -> None:
    """A retry goes to another candidate, never one ejected after the candidates were taken."""
    router = _lb_router()
    router.update([_meta(1), _meta(2), _meta(3), _meta(4)])
    for policy in (LO, RR, WRR):
        c = router.candidates("IRIS", policy, None)
        for _ in range(20):
            other = router.choose_other("IRIS", c, _meta(1), policy)
            assert other is not None and other.instance_id != "iris-1"
    c = router.candidates("IRIS", LO, None)
    router.failed(_meta(2), Failure.CONNECT)
    picks = {router.choose_other("IRIS", c, _meta(1), LO).instance_id for _ in range(30)}  # type: ignore[union-attr]
    assert picks == {"iris-3", "iris-4"}
    lone = Candidates("", (_meta(1),))
    assert router.choose_other("IRIS", lone, _meta(1), LO) is None


def test_hand_built_candidates_are_completed() -> None:
    """Candidates built by hand (no precomputed fields) still balance over the router's loads."""
    router = _lb_router()
    router.update([_meta(1), _meta(2)])
    c = Candidates("", (_meta(1), _meta(2)))
    assert router.choose("IRIS", c, WRR).instance_id in {"iris-1", "iris-2"}
    with pytest.raises(ValueError, match="no candidate"):
        router.choose("IRIS", Candidates("", ()), LO)


class RouterCalls(RuleBasedStateMachine):
    """Any sequence of registry changes, choices, sends and ends keeps the counters exact."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.router = _lb_router(self.clock, zone="z1")
        self.in_flight: list[Instance] = []
        self.router.update([_meta(n, zone=f"z{n % 2}") for n in range(4)])

    @rule(
        members=st.lists(st.integers(0, 5), max_size=6, unique=True),
        moved=st.booleans(),
    )
    def registry_changes(self, members: list[int], moved: bool) -> None:
        port = 31000 if moved else None
        self.router.update([_meta(n, zone=f"z{n % 2}", port=port and port + n) for n in members])

    @rule(lb=st.sampled_from(list(LbAlgorithm)), zone_aware=st.booleans())
    def send(self, lb: LbAlgorithm, zone_aware: bool) -> None:
        policy = ServicePolicy(lb=lb, zone_aware=zone_aware)
        c = self.router.candidates("IRIS", policy, None)
        if not c.instances:
            return
        inst = self.router.choose("IRIS", c, policy)
        assert inst in c.instances
        self.router.sent(inst)
        self.in_flight.append(inst)

    @rule(
        data=st.data(),
        status=st.sampled_from([200, 404, 500, 503]),
        latency=st.floats(0, 5),
    )
    def answer(self, data: st.DataObject, status: int, latency: float) -> None:
        if self.in_flight:
            inst = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
            self.clock.now += 0.01
            self.router.answered(inst, status, latency_s=latency)

    @rule(data=st.data(), kind=st.sampled_from(list(Failure)))
    def fail(self, data: st.DataObject, kind: Failure) -> None:
        if self.in_flight:
            inst = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
            self.router.failed(inst, kind)

    @invariant()
    def counts_match_calls_in_flight(self) -> None:
        expected = Counter(key_of(i) for i in self.in_flight)
        for key, load in self.router.loads.items():
            assert load.outstanding == expected[key] >= 0
        assert set(expected) <= set(self.router.loads)

    def teardown(self) -> None:
        while self.in_flight:
            self.router.answered(self.in_flight.pop(), 200, latency_s=0.01)
        assert all(load.outstanding == 0 for load in self.router.loads.values())
        up = {key_of(i) for i in self.router.table.up.get("IRIS", ())}
        assert set(self.router.loads) == up


RouterCalls.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_router_calls_keep_counts_exact = RouterCalls.TestCase
