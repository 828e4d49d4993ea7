"""The traffic split between a service's revisions: pure, the random draw passed in.

Instances carry their revision in the ``aimp.revision`` metadata. A policy with
no revision weights sends calls to every routable instance (revision ``""``).
Otherwise:

1. A pin (the value of the policy's ``pin_header``) naming a known revision wins,
   even one with weight 0 (how the idle colour of a blue-green pair is tested by
   hand). Known: named in the policy, or carried by any registered instance of
   the service. When the pinned revision has no routable instance the call gets
   none (the data plane answers 503) rather than silently another revision.
   A pin naming an unknown revision raises :class:`UnknownRevision`.
2. Otherwise a revision is drawn among those with weight > 0 *that have a routable
   instance*, in proportion to their weights: a canary whose pods are all down
   sends its share to the others instead of to nothing.
3. When no weighted revision has a routable instance, every routable instance is a
   candidate (revision ``""``): something beats nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from aimp_core.errors import NotFound
from aimp_core.registry_client import META_REVISION, Instance
from aimp_gateway.policy import ServicePolicy

#: The revision of "every routable instance" (no split, or nothing weighted is routable).
ALL_REVISIONS = ""


class UnknownRevision(NotFound):
    """A pin header named a revision the service does not have (404)."""

    def __init__(self, service: str, pinned: str, known: Iterable[str], header: str) -> None:
        self.service = service
        self.pinned = pinned
        self.known = tuple(sorted(known))
        listed = ", ".join(f"'{r}'" for r in self.known) or "none"
        super().__init__(
            f"service '{service}' has no revision '{pinned}' (header {header}); known "
            f"revisions: {listed}. Name one of them, or leave the header out to use the "
            "configured traffic split"
        )


def revision_of(instance: Instance) -> str:
    """The instance's ``aimp.revision`` (``""`` when it carries none)."""
    return instance.metadata.get(META_REVISION, "")


def pick_revision(
    routable: Collection[str],
    policy: ServicePolicy,
    pinned: str | None,
    draw: float,
    *,
    known: Collection[str],
    service: str,
) -> str:
    """The revision this call goes to, or ``""`` for every routable instance.

    ``routable``: the revisions that have a routable instance now; ``known``: every
    revision the service has (``routable`` need not be repeated in it); ``draw``: a
    random float in [0, 1).
    """
    if pinned:
        if pinned in routable or pinned in known or _named(policy, pinned):
            return pinned
        names = set(known) | set(routable) | {rw.revision for rw in policy.revisions}
        names.discard(ALL_REVISIONS)
        raise UnknownRevision(service, pinned, names, policy.pin_header)
    if not policy.revisions:
        return ALL_REVISIONS
    total = 0
    for rw in policy.revisions:
        if rw.weight > 0 and rw.revision in routable:
            total += rw.weight
    if total <= 0:
        return ALL_REVISIONS
    point = draw * total
    acc = 0
    chosen = ALL_REVISIONS
    for rw in policy.revisions:
        if rw.weight > 0 and rw.revision in routable:
            acc += rw.weight
            chosen = rw.revision
            if point < acc:
                break
    return chosen


def _named(policy: ServicePolicy, revision: str) -> bool:
    return any(rw.revision == revision for rw in policy.revisions)


def group_by_revision(instances: Iterable[Instance]) -> dict[str, tuple[Instance, ...]]:
    """Instances by their revision, each group in the given order."""
    groups: dict[str, list[Instance]] = {}
    for inst in instances:
        groups.setdefault(revision_of(inst), []).append(inst)
    return {rev: tuple(group) for rev, group in groups.items()}


def choose_revision(
    instances: tuple[Instance, ...],
    policy: ServicePolicy,
    pinned: str | None,
    draw: float,
    *,
    service: str = "",
    known: Collection[str] = (),
) -> tuple[str, tuple[Instance, ...]]:
    """(revision, its instances) among ``instances``; ``("", instances)`` for no split.

    The router does the grouping once per table rebuild and calls
    :func:`pick_revision`; this is the same decision for a plain tuple.
    """
    groups = group_by_revision(instances)
    routable = {rev for rev in groups if rev}
    revision = pick_revision(
        routable,
        policy,
        pinned,
        draw,
        known=known,
        service=service or (instances[0].service if instances else ""),
    )
    if revision == ALL_REVISIONS:
        return ALL_REVISIONS, instances
    return revision, groups.get(revision, ())
