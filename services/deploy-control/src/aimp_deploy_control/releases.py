"""Release use-cases: add a revision, split traffic, promote, roll back.

The order of each keeps every call answered:

- a new revision's pods start only after the gateway's split pins the traffic to the
  existing revisions (a service without a split sends calls to every instance), and it
  takes traffic only once warmed up (revision_start.py);
- promote and rollback move the traffic first, wait until the gateways apply it, give
  calls in flight a drain grace, and only then stop the old revision's pods (each
  sidecar also drains on SIGTERM);
- rollback first brings the old revision back (pods UP and warmed) before it moves
  the traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aimp_core.errors import AimpError, ServiceUnavailable
from aimp_deploy_control.revision_settings import RevisionSettings
from aimp_deploy_control.revision_spec import check_bounds
from aimp_deploy_control.revision_start import RevisionStarter
from aimp_deploy_control.revision_store import Revision, RevisionFields
from aimp_deploy_control.revisions import (
    FULL,
    RevisionFacts,
    RevisionState,
    next_full_seq,
    promote_split,
    revision_name,
    rollback_target,
    states_after_split,
    to_scale_down,
    transition,
    validate_split,
)
from aimp_deploy_control.schemas import ReleasePublic, RevisionCreate
from aimp_deploy_control.service import Deployments, find
from aimp_deploy_control.traffic import Applied, GatewayTraffic
from aimp_deploy_control.validation import validate_replicas

log = logging.getLogger(__name__)


def facts(revisions: list[Revision]) -> list[RevisionFacts]:
    return [RevisionFacts(r.name, r.state, r.traffic, r.full_seq) for r in revisions]


class Releases:
    def __init__(
        self,
        deployments: Deployments,
        traffic: GatewayTraffic,
        starter: RevisionStarter,
        settings: RevisionSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.deployments = deployments
        self.traffic = traffic
        self.starter = starter
        self.settings = settings
        self._clock = clock
        self._sleep = sleep

    async def add_revision(self, name: str, req: RevisionCreate) -> ReleasePublic:
        """Start a new revision with no traffic; it warms up in the background."""
        d = self.deployments
        replicas = validate_replicas(req.initial, d.max_replicas)
        serving = req.serving()
        check_bounds(serving, d.max_replicas)
        src = await d.pods.source_of(req)
        async with d.locks[name]:
            dep = await d.require(name)
            busy = d.busy_error(name, "add a revision to")
            if busy is not None:
                raise busy
            revisions = await d.pods.revisions(name)
            new_name = revision_name(max(r.number for r in revisions) + 1)
            served = await d.pods.served_for_source(name, new_name, src, req.runtime)
            resources = req.resources.model_dump() if req.resources else None
            await d.pods.check_gpus(name, new_name, resources, replicas)
            # Pin today's split before new pods register, so they get no call yet.
            split = {r.name: r.traffic for r in revisions}
            version = await self.traffic.set_split(name, split)
            await self.traffic.wait_applied(version, self._clock())
            fields = RevisionFields(
                src.model_file, src.framework, req.runtime, src.model, replicas, resources, serving
            )
            rev = await asyncio.to_thread(d.store.add_revision, name, fields)
            try:
                await d.pods.apply_revision(name, rev, replicas, served)
            except AimpError:
                await d.pods.apply_revision(name, rev, 0)
                await self._set_states(name, {rev.name: RevisionState.FAILED})
                raise
            self.starter.begin(name, rev.name)
        log.info("revision added", extra={"deployment": dep.name, "revision": rev.name})
        return await self._public(name, split, version)

    async def set_traffic(self, name: str, split: Mapping[str, int]) -> ReleasePublic:
        """Split the service's calls by ``split`` (percent by revision, summing to 100)."""
        async with self.deployments.locks[name]:
            await self.deployments.require(name)
            revisions = await self.deployments.pods.revisions(name)
            new = validate_split(split, facts(revisions))
            version, _ = await self._move_traffic(name, revisions, new)
        return await self._public(name, new, version)

    async def promote(self, name: str, revision: str) -> ReleasePublic:
        """All traffic to ``revision``; the others scale to 0 once the change is in force."""
        async with self.deployments.locks[name]:
            await self.deployments.require(name)
            revisions = await self.deployments.pods.revisions(name)
            target = find(revisions, revision, name)
            if target.state not in (RevisionState.READY, RevisionState.SERVING):
                transition(target.name, target.state, RevisionState.SERVING)  # 409 saying why
            new = promote_split(facts(revisions), revision)
            version, applied = await self._move_traffic(name, revisions, new)
            await self._scale_down_others(name, revision)
        log.info("revision promoted", extra={"deployment": name, "revision": revision})
        return await self._public(name, new, version, applied)

    async def rollback(self, name: str) -> ReleasePublic:
        """Back to the previous revision that had all the traffic: bring it up and warm,
        move the traffic to it, then scale the others to 0."""
        async with self.deployments.locks[name]:
            await self.deployments.require(name)
            revisions = await self.deployments.pods.revisions(name)
            target = find(revisions, rollback_target(facts(revisions)), name)
            await self._bring_back(name, target)
            revisions = await self.deployments.pods.revisions(name)
            new = promote_split(facts(revisions), target.name)
            version, applied = await self._move_traffic(name, revisions, new)
            await self._scale_down_others(name, target.name)
        log.info("rolled back", extra={"deployment": name, "revision": target.name})
        return await self._public(name, new, version, applied)

    # -- steps ----------------------------------------------------------------------------------

    async def _bring_back(self, name: str, target: Revision) -> None:
        """Run and warm ``target``'s pods (a no-op when it is READY or SERVING)."""
        if target.state in (RevisionState.SCALED_DOWN, RevisionState.FAILED):
            await self._set_states(name, {target.name: RevisionState.STARTING})
            await self.deployments.pods.apply_revision(name, target, target.replicas)
            self.starter.begin(name, target.name)
        elif target.state in (RevisionState.READY, RevisionState.SERVING):
            return
        elif self.starter.record(name, target.name) is None:
            self.starter.begin(name, target.name)
        rec = await self.starter.wait(name, target.name)
        state = find(await self.deployments.pods.revisions(name), target.name, name).state
        if state not in (RevisionState.READY, RevisionState.SERVING):
            raise ServiceUnavailable(
                f"cannot roll back to {target.name}: its pods did not come back ({rec.error}); "
                "the traffic was not moved. Fix the cause and roll back again"
            )

    async def _move_traffic(
        self, name: str, revisions: list[Revision], new: dict[str, int]
    ) -> tuple[int, Applied]:
        """Write ``new`` to the gateway, then store it; wait until it is in force."""
        f = facts(revisions)
        states = states_after_split(f, new)
        seq = next_full_seq(f)
        full = {n: seq for n, w in new.items() if w == FULL and _traffic(revisions, n) != FULL}
        version = await self.traffic.set_split(name, new)
        written_at = self._clock()
        await asyncio.to_thread(
            self.deployments.store.change_revisions,
            name,
            traffic=new,
            states=states,
            full_seq=full,
        )
        applied = await self.traffic.wait_applied(version, written_at)
        log.info("traffic moved", extra={"deployment": name, "split": new, "version": version})
        return version, applied

    async def _scale_down_others(self, name: str, keep: str) -> None:
        await self._sleep(self.settings.drain_grace_s)  # calls already sent finish
        revisions = await self.deployments.pods.revisions(name)
        for rev_name in to_scale_down(facts(revisions), keep):
            rev = find(revisions, rev_name, name)
            await self.starter.cancel_one(name, rev_name)
            await self.deployments.pods.apply_revision(name, rev, 0)
            await self._set_states(name, {rev_name: RevisionState.SCALED_DOWN})

    async def _set_states(self, name: str, targets: Mapping[str, RevisionState]) -> None:
        revisions = await self.deployments.pods.revisions(name)
        states = {n: transition(n, find(revisions, n, name).state, t) for n, t in targets.items()}
        await asyncio.to_thread(self.deployments.store.change_revisions, name, states=states)

    async def _public(
        self,
        name: str,
        split: Mapping[str, int],
        version: int | None,
        applied: Applied | None = None,
    ) -> ReleasePublic:
        return ReleasePublic(
            deployment=await self.deployments.get(name),
            traffic=dict(split),
            config_version=version,
            applied=applied.describe() if applied else None,
        )


def _traffic(revisions: list[Revision], name: str) -> int:
    return next((r.traffic for r in revisions if r.name == name), 0)
