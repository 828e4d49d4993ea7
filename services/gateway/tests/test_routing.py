"""Routing table and round robin: only UP instances, fair turns, stable order."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from aimp_core.registry_client import Instance
from aimp_gateway.routing import RoundRobin, build_table, key_of, pick, pick_other


def _inst(i: int, app: str = "RESNET", status: str = "UP") -> Instance:
    return Instance(f"{app.lower()}-{i}", app, "127.0.0.1", 9000 + i, status)


instance_sets = st.lists(st.integers(0, 50), min_size=1, max_size=12, unique=True).map(
    lambda ids: tuple(_inst(i) for i in ids)
)


@given(instances=instance_sets, rounds=st.integers(1, 20), start=st.integers(0, 10**6))
def test_round_robin_is_fair(instances: tuple[Instance, ...], rounds: int, start: int) -> None:
    """Over k*n consecutive turns each of n instances is chosen exactly k times."""
    chosen = Counter(pick(instances, start + t).instance_id for t in range(rounds * len(instances)))
    assert set(chosen) == {i.instance_id for i in instances}
    assert set(chosen.values()) == {rounds}


@given(instances=instance_sets, calls=st.integers(1, 200))
def test_balancer_only_picks_members_and_spreads(
    instances: tuple[Instance, ...], calls: int
) -> None:
    """The balancer picks only given instances, and counts differ by at most one."""
    rr = RoundRobin()
    chosen = Counter(rr.choose("RESNET", instances).instance_id for _ in range(calls))
    assert set(chosen) <= {i.instance_id for i in instances}
    counts = [chosen.get(i.instance_id, 0) for i in instances]
    assert max(counts) - min(counts) <= 1


def test_balancer_keeps_separate_turns_per_app() -> None:
    """Calls to one app do not shift another app's rotation."""
    rr = RoundRobin()
    a = (_inst(1, "A"), _inst(2, "A"))
    b = (_inst(1, "B"), _inst(2, "B"))
    assert rr.choose("A", a).instance_id == "a-1"
    assert rr.choose("B", b).instance_id == "b-1"
    assert rr.choose("A", a).instance_id == "a-2"


@given(ids=st.lists(st.integers(0, 30), min_size=0, max_size=15, unique=True), data=st.data())
def test_table_holds_only_up_instances_in_stable_order(ids: list[int], data: st.DataObject) -> None:
    """Only UP instances are routable, sorted by id in any registry order; all apps known."""
    statuses = data.draw(
        st.lists(
            st.sampled_from(["UP", "DOWN", "STARTING", "OUT_OF_SERVICE"]),
            min_size=len(ids),
            max_size=len(ids),
        )
    )
    instances = [_inst(i, status=s) for i, s in zip(ids, statuses, strict=True)]
    shuffled = data.draw(st.permutations(instances))
    table = build_table(shuffled)
    up = [i for i in instances if i.status == "UP"]
    assert table.instances("RESNET") == tuple(sorted(up, key=lambda i: i.instance_id))
    assert ("RESNET" in table.known) == bool(instances)
    assert table.instances("OTHER") == ()


def test_table_is_immutable() -> None:
    """A published table cannot be changed in place."""
    table = build_table([_inst(1)])
    try:
        table.up["X"] = ()  # type: ignore[index]
    except TypeError:
        return
    raise AssertionError("the routing table accepted a write")


@given(instances=instance_sets, data=st.data(), turn=st.integers(0, 10**6))
def test_pick_other_never_returns_the_failed_one(
    instances: tuple[Instance, ...], data: st.DataObject, turn: int
) -> None:
    """After a refused connection another instance is tried, or none when it was the only one."""
    failed = data.draw(st.sampled_from(instances))
    other = pick_other(instances, failed, turn)
    if len(instances) == 1:
        assert other is None
    else:
        assert other is not None and other in instances and other != failed


@given(instances=instance_sets, data=st.data())
def test_retries_spread_over_the_others(
    instances: tuple[Instance, ...], data: st.DataObject
) -> None:
    """Retries after one instance failed go round the remaining ones, not always to the first."""
    failed = data.draw(st.sampled_from(instances))
    rr = RoundRobin()
    others = [i for i in instances if i != failed]
    chosen = (
        Counter(
            rr.choose_other("RESNET", instances, failed).instance_id  # type: ignore[union-attr]
            for _ in range(3 * len(others))
        )
        if others
        else Counter()
    )
    assert all(chosen[i.instance_id] == 3 for i in others)


@given(ids=st.lists(st.integers(0, 30), min_size=1, max_size=10, unique=True), data=st.data())
def test_ejected_instances_are_skipped_unless_all_are(ids: list[int], data: st.DataObject) -> None:
    """Ejected UP instances are not routable; when every UP one is ejected, all are tried."""
    instances = [_inst(i) for i in ids]
    out = set(data.draw(st.lists(st.sampled_from(ids), unique=True)))
    table = build_table(instances, {key_of(_inst(i)) for i in out})
    routable = {i.instance_id for i in table.instances("RESNET")}
    assert table.up["RESNET"] == tuple(sorted(instances, key=lambda i: i.instance_id))
    every = {i.instance_id for i in instances}
    if out == set(ids):
        assert routable == every
    else:
        assert routable == every - {_inst(i).instance_id for i in out}
