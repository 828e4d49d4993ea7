"""The router: registry changes and outcomes in, a routing table out (fake clock, real probe)."""

from __future__ import annotations

import asyncio
import socket

from prometheus_client import REGISTRY

from aimp_core.net import free_port
from aimp_core.registry_client import Instance
from aimp_gateway.outlier import Failure, OutlierPolicy
from aimp_gateway.router import Router
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
