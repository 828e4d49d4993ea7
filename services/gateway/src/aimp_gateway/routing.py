"""Routing decisions: the immutable table of routable instances and the round-robin choice.

A :class:`RoutingTable` is built from the registry's instance list and the set
of ejected instances, and never changed afterwards; the router swaps in a new
one on every registry change and every ejection. Only UP instances are
routable; ejected ones are skipped unless every UP instance of the service is
ejected (then all are tried: something beats nothing). Instances are kept in a
stable order (by id) so that round robin stays fair across rebuilds.

Everything a call needs beyond that is precomputed here too, once per table: per
service, the :class:`Candidates` of every revision and of the whole service, each
with the subset in the gateway's zone (when it has any routable instance there),
their identity keys, ``aimp.weight`` weights and shared load counters. Choosing
the candidates for a call is then two dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from aimp_core.registry_client import META_ZONE, Instance
from aimp_gateway.balancer import InstanceLoad, weight_of
from aimp_gateway.revisions import ALL_REVISIONS, revision_of

STATUS_UP = "UP"

InstanceKey = tuple[str, str]


def key_of(instance: Instance) -> InstanceKey:
    """An instance's identity across registry changes: (app, instance id)."""
    return (instance.app, instance.instance_id)


#: What identifies a group of candidates for the balancers' state: (app, revision, in zone).
GroupKey = tuple[str, str, bool]


@dataclass(frozen=True)
class Candidates:
    """Where one call may go: a revision (``""`` = any) and its routable instances.

    Empty ``instances``: nothing is routable. The other fields are precomputed
    for the balancers (aligned with ``instances``) and left out of comparisons.
    """

    revision: str
    instances: tuple[Instance, ...]
    group: GroupKey = field(default=("", "", False), compare=False, repr=False)
    keys: tuple[InstanceKey, ...] = field(default=(), compare=False, repr=False)
    weights: tuple[int, ...] = field(default=(), compare=False, repr=False)
    loads: tuple[InstanceLoad, ...] = field(default=(), compare=False, repr=False)

    @property
    def complete(self) -> bool:
        """Whether the precomputed fields match ``instances`` (False if built by hand)."""
        n = len(self.instances)
        return len(self.keys) == n and len(self.weights) == n and len(self.loads) == n


NO_CANDIDATES = Candidates(ALL_REVISIONS, ())


@dataclass(frozen=True)
class Placement:
    """One group's candidates everywhere, and those in the gateway's zone (None: none there)."""

    everywhere: Candidates
    local: Candidates | None = None

    def pick(self, zone_aware: bool) -> Candidates:
        if zone_aware and self.local is not None:
            return self.local
        return self.everywhere


@dataclass(frozen=True)
class AppRouting:
    """A service's precomputed candidates: all routable instances and per revision."""

    every: Placement
    #: Revisions that have a routable instance -> their placement.
    revisions: Mapping[str, Placement]
    #: Every revision any registered instance carries (any status), for pin checks.
    known_revisions: frozenset[str]


@dataclass(frozen=True)
class RoutingTable:
    """``up``: app -> UP instances; ``routable``: app -> those not ejected; ``known``: all apps.

    ``apps``: app -> its precomputed candidates (only apps with an UP instance).
    """

    up: Mapping[str, tuple[Instance, ...]] = field(default_factory=lambda: MappingProxyType({}))
    routable: Mapping[str, tuple[Instance, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    known: frozenset[str] = frozenset()
    apps: Mapping[str, AppRouting] = field(default_factory=lambda: MappingProxyType({}))

    def instances(self, app: str) -> tuple[Instance, ...]:
        """Where calls to ``app`` may go now (empty: none is UP)."""
        return self.routable.get(app, ())

    def group_keys(self) -> set[Hashable]:
        """Every candidate group in the table (to prune the balancers' state)."""
        keys: set[Hashable] = set()
        for routing in self.apps.values():
            for placement in (routing.every, *routing.revisions.values()):
                keys.add(placement.everywhere.group)
                if placement.local is not None:
                    keys.add(placement.local.group)
        return keys


def build_table(
    instances: Iterable[Instance],
    ejected: Collection[Hashable] = frozenset(),
    *,
    zone: str | None = None,
    loads: Mapping[InstanceKey, InstanceLoad] | None = None,
) -> RoutingTable:
    """The table for the registry's current instances, skipping ``ejected`` keys.

    ``zone``: the gateway's zone (None: no preference). ``loads``: the router's
    load counters by instance key; an instance missing there gets a fresh one.
    """
    by_app: dict[str, list[Instance]] = {}
    known: set[str] = set()
    revisions: dict[str, set[str]] = {}
    for inst in instances:
        known.add(inst.app)
        rev = revision_of(inst)
        if rev:
            revisions.setdefault(inst.app, set()).add(rev)
        if inst.status == STATUS_UP:
            by_app.setdefault(inst.app, []).append(inst)
    up = {
        app: tuple(sorted(group, key=lambda i: (i.instance_id, i.ip, i.port)))
        for app, group in by_app.items()
    }
    routable = {app: _skip_ejected(group, ejected) for app, group in up.items()}
    load_map = loads if loads is not None else {}
    apps = {
        app: _app_routing(app, group, frozenset(revisions.get(app, ())), zone, load_map)
        for app, group in routable.items()
    }
    return RoutingTable(
        up=MappingProxyType(up),
        routable=MappingProxyType(routable),
        known=frozenset(known),
        apps=MappingProxyType(apps),
    )


def _app_routing(
    app: str,
    routable: tuple[Instance, ...],
    known_revisions: frozenset[str],
    zone: str | None,
    loads: Mapping[InstanceKey, InstanceLoad],
) -> AppRouting:
    by_revision: dict[str, list[Instance]] = {}
    for inst in routable:
        rev = revision_of(inst)
        if rev:
            by_revision.setdefault(rev, []).append(inst)
    return AppRouting(
        every=_placement(app, ALL_REVISIONS, routable, zone, loads),
        revisions=MappingProxyType(
            {
                rev: _placement(app, rev, tuple(group), zone, loads)
                for rev, group in by_revision.items()
            }
        ),
        known_revisions=known_revisions,
    )


def _placement(
    app: str,
    revision: str,
    group: tuple[Instance, ...],
    zone: str | None,
    loads: Mapping[InstanceKey, InstanceLoad],
) -> Placement:
    everywhere = make_candidates(app, revision, group, loads)
    if not zone:
        return Placement(everywhere)
    local = tuple(i for i in group if i.metadata.get(META_ZONE) == zone)
    if not local:
        return Placement(everywhere)
    if len(local) == len(group):
        return Placement(everywhere, everywhere)
    return Placement(everywhere, make_candidates(app, revision, local, loads, in_zone=True))


def make_candidates(
    app: str,
    revision: str,
    instances: tuple[Instance, ...],
    loads: Mapping[InstanceKey, InstanceLoad],
    *,
    in_zone: bool = False,
) -> Candidates:
    """Candidates with their balancer fields filled in (fresh counters where ``loads`` lacks)."""
    keys = tuple(key_of(i) for i in instances)
    return Candidates(
        revision=revision,
        instances=instances,
        group=(app, revision, in_zone),
        keys=keys,
        weights=tuple(weight_of(i) for i in instances),
        loads=tuple(loads.get(k) or InstanceLoad() for k in keys),
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
    """One turn counter per app (or candidate group); :meth:`choose` advances it."""

    def __init__(self) -> None:
        self._turns: dict[Hashable, int] = {}

    def turn(self, key: Hashable) -> int:
        """The turn for ``key`` (an app or a :data:`GroupKey`), then the next one."""
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1 if turn < 1 << 62 else 0
        return turn

    def retain(self, keys: set[Hashable]) -> None:
        """Forget the counters of candidate groups that no longer exist (apps are kept)."""
        for key in [k for k in self._turns if isinstance(k, tuple) and k not in keys]:
            del self._turns[key]

    def choose(self, app: str, instances: tuple[Instance, ...]) -> Instance:
        return pick(instances, self.turn(app))

    def choose_other(
        self, app: str, instances: tuple[Instance, ...], failed: Instance
    ) -> Instance | None:
        """For a retry: the next instance in turn that is not ``failed``, if any."""
        return pick_other(instances, failed, self.turn(app))
