"""Routing decisions: the immutable table of routable instances and the round-robin choice.

A :class:`RoutingTable` is built from the registry's instance list and the set
of ejected instances, and never changed afterwards; the router swaps in a new
one on every registry change and every ejection. Only UP instances are
routable; ejected ones are skipped unless every UP instance of the service is
ejected (then all are tried: something beats nothing). Instances are kept in a
stable order (by id) so that round robin stays fair across rebuilds.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aimp_core.registry_client import Instance

STATUS_UP = "UP"

InstanceKey = tuple[str, str]


def key_of(instance: Instance) -> InstanceKey:
    """An instance's identity across registry changes: (app, instance id)."""
    return (instance.app, instance.instance_id)


@dataclass(frozen=True)
class RoutingTable:
    """``up``: app -> UP instances; ``routable``: app -> those not ejected; ``known``: all apps."""

    up: Mapping[str, tuple[Instance, ...]] = field(default_factory=lambda: MappingProxyType({}))
    routable: Mapping[str, tuple[Instance, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    known: frozenset[str] = frozenset()

    def instances(self, app: str) -> tuple[Instance, ...]:
        """Where calls to ``app`` may go now (empty: none is UP)."""
        return self.routable.get(app, ())


def build_table(
    instances: Iterable[Instance], ejected: Collection[Hashable] = frozenset()
) -> RoutingTable:
    """The table for the registry's current instances, skipping ``ejected`` keys."""
    by_app: dict[str, list[Instance]] = {}
    known: set[str] = set()
    for inst in instances:
        known.add(inst.app)
        if inst.status == STATUS_UP:
            by_app.setdefault(inst.app, []).append(inst)
    up = {
        app: tuple(sorted(group, key=lambda i: (i.instance_id, i.ip, i.port)))
        for app, group in by_app.items()
    }
    routable = {app: _skip_ejected(group, ejected) for app, group in up.items()}
    return RoutingTable(
        up=MappingProxyType(up), routable=MappingProxyType(routable), known=frozenset(known)
    )


def _skip_ejected(
    group: tuple[Instance, ...], ejected: Collection[Hashable]
) -> tuple[Instance, ...]:
    if not ejected:
        return group
    healthy = tuple(i for i in group if key_of(i) not in ejected)
    return healthy or group


def pick(instances: tuple[Instance, ...], turn: int) -> Instance:
    """The instance whose turn it is (round robin); ``instances`` must not be empty."""
    return instances[turn % len(instances)]


def pick_other(instances: tuple[Instance, ...], failed: Instance, turn: int) -> Instance | None:
    """An instance other than ``failed`` (round robin among the rest), if there is one."""
    others = tuple(i for i in instances if key_of(i) != key_of(failed))
    return pick(others, turn) if others else None


class RoundRobin:
    """One turn counter per app; :meth:`choose` advances it."""

    def __init__(self) -> None:
        self._turns: dict[str, int] = {}

    def _turn(self, app: str) -> int:
        turn = self._turns.get(app, 0)
        self._turns[app] = turn + 1 if turn < 1 << 62 else 0
        return turn

    def choose(self, app: str, instances: tuple[Instance, ...]) -> Instance:
        return pick(instances, self._turn(app))

    def choose_other(
        self, app: str, instances: tuple[Instance, ...], failed: Instance
    ) -> Instance | None:
        """For a retry: the next instance in turn that is not ``failed``, if any."""
        return pick_other(instances, failed, self._turn(app))
