"""Routing decisions: the immutable table of UP instances and the round-robin choice.

A :class:`RoutingTable` is built from the registry's instance list and never
changed afterwards; the refresher swaps in a new one. Instances are kept in a
stable order (by id) so that round robin stays fair across refreshes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aimp_core.registry_client import Instance

STATUS_UP = "UP"


@dataclass(frozen=True)
class RoutingTable:
    """``up``: app name -> UP instances; ``known``: every app the registry lists."""

    up: Mapping[str, tuple[Instance, ...]] = field(default_factory=lambda: MappingProxyType({}))
    known: frozenset[str] = frozenset()

    def instances(self, app: str) -> tuple[Instance, ...]:
        return self.up.get(app, ())


def build_table(instances: Iterable[Instance]) -> RoutingTable:
    """The table for the registry's current instances."""
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
    return RoutingTable(up=MappingProxyType(up), known=frozenset(known))


def pick(instances: tuple[Instance, ...], turn: int) -> Instance:
    """The instance whose turn it is (round robin); ``instances`` must not be empty."""
    return instances[turn % len(instances)]


def pick_other(instances: tuple[Instance, ...], failed: Instance) -> Instance | None:
    """The next instance after ``failed`` (which refused a connection), if there is another."""
    if len(instances) < 2:
        return None
    try:
        position = instances.index(failed)
    except ValueError:
        return instances[0]
    return instances[(position + 1) % len(instances)]


class RoundRobin:
    """One turn counter per app; :meth:`choose` advances it."""

    def __init__(self) -> None:
        self._turns: dict[str, int] = {}

    def choose(self, app: str, instances: tuple[Instance, ...]) -> Instance:
        turn = self._turns.get(app, 0)
        self._turns[app] = turn + 1 if turn < 1 << 62 else 0
        return pick(instances, turn)
