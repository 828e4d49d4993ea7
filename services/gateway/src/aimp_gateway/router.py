"""The gateway's routing state: registry view + outlier detector -> one immutable table.

:attr:`Router.table` is swapped, never changed: the data plane reads it without
locks (asyncio runs one callback at a time, and the swap is one assignment). A
new table is built when the registry changes (:meth:`update`) and when an
instance is ejected or reinstated. A background task probes instances whose
ejection time is up (a TCP connect, the same thing the ejection was about) and
puts them back in rotation or ejects them again for longer.

Per call the data plane asks :meth:`Router.candidates` (revision split, zone
preference), :meth:`Router.choose` (the policy's balancer), reports
:meth:`Router.sent` when the call goes out and exactly one of
:meth:`Router.answered` / :meth:`Router.failed` when it ends. The router keeps
one :class:`~aimp_gateway.balancer.InstanceLoad` per UP instance (calls in
flight, latency estimate); a load whose instance left the registry is kept until
its last call ends, so counts never leak or go negative.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aimp_core.registry_client import META_ZONE, Instance
from aimp_gateway.balancer import (
    DEFAULT_DECAY_S,
    InstanceLoad,
    SmoothWeighted,
    power_of_two,
    weight_of,
    weighted_draw,
)
from aimp_gateway.outlier import Ejection, Failure, OutlierDetector, OutlierPolicy
from aimp_gateway.policy import LbAlgorithm, ServicePolicy
from aimp_gateway.revisions import ALL_REVISIONS, pick_revision, revision_of
from aimp_gateway.router_metrics import (
    EJECTED,
    EJECTIONS,
    FAILURES,
    LOAD_COLLECTOR,
    RETRIES,
)
from aimp_gateway.routing import (
    NO_CANDIDATES,
    STATUS_UP,
    Candidates,
    InstanceKey,
    RoundRobin,
    RoutingTable,
    build_table,
    key_of,
    make_candidates,
    pick,
)

__all__ = ["Candidates", "Router"]

log = logging.getLogger(__name__)

Probe = Callable[[Instance], Awaitable[bool]]

#: The prober wakes at least this often, so a clock jump or a missed wake-up costs little.
_PROBER_MAX_SLEEP_S = 1.0


class Router:
    """Owns the routing table, the balancers, the load counters and the outlier detector."""

    def __init__(
        self,
        policy: OutlierPolicy,
        *,
        probe: Probe,
        clock: Callable[[], float] = time.monotonic,
        zone: str | None = None,
        rand: Callable[[], float] = random.random,
        decay_s: float = DEFAULT_DECAY_S,
    ) -> None:
        self.detector = OutlierDetector(policy)
        #: Round robin per app (the data plane's old API) and per candidate group.
        self.balancer = RoundRobin()
        self.weighted = SmoothWeighted()
        self.table = RoutingTable()
        #: The gateway's zone (``aimp.zone`` of preferred instances); None = no preference.
        self.zone = zone or None
        self.clock = clock
        self.decay_s = decay_s
        #: Calls in flight and latency per instance: every UP one, plus any that left
        #: with calls still in flight (dropped when their last call ends).
        self.loads: dict[InstanceKey, InstanceLoad] = {}
        self._rand = rand
        self._probe = probe
        self._instances: tuple[Instance, ...] = ()
        self._up: dict[InstanceKey, Instance] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        LOAD_COLLECTOR.watch(self)

    # -- the registry -----------------------------------------------------------------

    def update(self, instances: Iterable[Instance]) -> None:
        """The registry's instances changed: forget what left UP, rebuild the table."""
        self._instances = tuple(instances)
        up = {key_of(i): i for i in self._instances if i.status == STATUS_UP}
        for key, inst in up.items():
            before = self._up.get(key)
            if before is not None and (before.ip, before.port) != (inst.ip, inst.port):
                self.detector.reset(key)  # same id, new address: a new process
                load = self.loads.get(key)
                if load is not None:
                    load.forget_latency()
            if key not in self.loads:
                self.loads[key] = InstanceLoad()
        for key in [k for k, load in self.loads.items() if k not in up and not load.outstanding]:
            del self.loads[key]
        self.detector.retain(up)
        self._up = up
        self._rebuild()

    def _rebuild(self) -> None:
        self.table = build_table(
            self._instances, self.detector.ejected_keys(), zone=self.zone, loads=self.loads
        )
        groups = self.table.group_keys()
        self.balancer.retain(groups)
        self.weighted.retain(groups)

    # -- choosing (the hot path) ---------------------------------------------------------

    def candidates(self, app: str, policy: ServicePolicy, pinned: str | None) -> Candidates:
        """Where a call to ``app`` may go: revision split, then zone preference.

        Empty ``instances``: nothing routable (none UP, or the pinned revision has
        none). Raises :class:`~aimp_gateway.revisions.UnknownRevision` for a pin
        naming a revision the service does not have.
        """
        routing = self.table.apps.get(app)
        if not pinned and not policy.revisions:
            if routing is None:
                return NO_CANDIDATES
            return routing.every.pick(policy.zone_aware)
        if routing is None:
            if app not in self.table.known:
                return NO_CANDIDATES  # not deployed: the data plane's 404 says so
            known = frozenset(
                rev for i in self._instances if i.app == app and (rev := revision_of(i))
            )
            revision = pick_revision(
                (), policy, pinned, self._rand(), known=known, service=app.lower()
            )
            return NO_CANDIDATES if revision == ALL_REVISIONS else Candidates(revision, ())
        revision = pick_revision(
            routing.revisions.keys(),
            policy,
            pinned,
            self._rand(),
            known=routing.known_revisions,
            service=app.lower(),
        )
        if revision == ALL_REVISIONS:
            return routing.every.pick(policy.zone_aware)
        placement = routing.revisions.get(revision)
        if placement is None:
            return Candidates(revision, ())  # pinned to a revision with nothing routable
        return placement.pick(policy.zone_aware)

    def choose(self, app: str, candidates: Candidates, policy: ServicePolicy) -> Instance:
        """The instance for the next call among ``candidates`` (not empty) by the policy's LB."""
        c = candidates if candidates.complete else self._complete(app, candidates)
        if not c.instances:
            raise ValueError(f"no candidate instance of {app!r} to choose from")
        lb = policy.lb
        if lb is LbAlgorithm.LEAST_OUTSTANDING:
            return c.instances[power_of_two(c.loads, self.clock(), self.decay_s, self._rand)]
        if lb is LbAlgorithm.WEIGHTED:
            return c.instances[self.weighted.choose(c.group, c.keys, c.weights)]
        return pick(c.instances, self.balancer.turn(c.group))

    def choose_other(
        self, app: str, candidates: Candidates, failed: Instance, policy: ServicePolicy
    ) -> Instance | None:
        """For a retry: another candidate than ``failed``, skipping ones ejected meanwhile."""
        c = candidates if candidates.complete else self._complete(app, candidates)
        failed_key = key_of(failed)
        others = [i for i, k in enumerate(c.keys) if k != failed_key]
        healthy = [i for i in others if not self.detector.is_ejected(c.keys[i])]
        pool = healthy or others
        if not pool:
            return None
        lb = policy.lb
        if lb is LbAlgorithm.LEAST_OUTSTANDING:
            loads = [c.loads[i] for i in pool]
            return c.instances[pool[power_of_two(loads, self.clock(), self.decay_s, self._rand)]]
        if lb is LbAlgorithm.WEIGHTED:
            weights = [c.weights[i] for i in pool]
            return c.instances[pool[weighted_draw(weights, self._rand())]]
        return c.instances[pool[self.balancer.turn(c.group) % len(pool)]]

    def _complete(self, app: str, candidates: Candidates) -> Candidates:
        """Hand-built candidates with the balancer fields filled in from the router's state."""
        return make_candidates(app, candidates.revision, candidates.instances, self.loads)

    # -- outcomes (the hot path) -------------------------------------------------------

    def sent(self, instance: Instance) -> None:
        """A call to ``instance`` went out; exactly one answered/failed must follow."""
        load = self.loads.get(key_of(instance))
        if load is not None:
            load.begin()

    def _ended(self, key: InstanceKey, latency_s: float | None, now: float, *, error: bool) -> None:
        load = self.loads.get(key)
        if load is None:
            return
        load.end()
        if latency_s is not None:
            load.observe(latency_s, now, self.decay_s, error=error)
        if not load.outstanding and key not in self._up:
            del self.loads[key]  # the instance left while this call was in flight

    def answered(self, instance: Instance, status: int, latency_s: float | None = None) -> None:
        """The instance answered ``status`` after ``latency_s`` (None: not measured).

        503 counts neither way for ejection: it is how a live sidecar sheds load
        (queue full) or drains; ejecting it for that would pile its share onto the
        others. A 5xx's latency never lowers the instance's estimate (a fast error
        must not attract more calls).
        """
        key = key_of(instance)
        now = self.clock()
        self._ended(key, latency_s, now, error=status >= 500)
        if status < 500:
            self.detector.success(key, now)
        elif status != 503:
            self._failure(instance, key, Failure.HTTP_5XX, now)

    def failed(self, instance: Instance, kind: Failure, latency_s: float | None = None) -> None:
        """The call to ``instance`` failed in this way; may eject it."""
        key = key_of(instance)
        now = self.clock()
        self._ended(key, latency_s, now, error=True)
        self._failure(instance, key, kind, now)

    def _failure(self, instance: Instance, key: InstanceKey, kind: Failure, now: float) -> None:
        FAILURES.labels(instance.service, kind.value).inc()
        if key not in self._up:
            return  # no longer UP in the registry: nothing to decide
        up = len(self.table.up.get(instance.app, ()))
        ejection = self.detector.failure(key, instance.app, kind, up=up, now=now)
        if ejection is not None:
            self._ejected(instance, ejection)

    def retried(self, instance: Instance, reason: str) -> None:
        """A call that failed on ``instance`` goes to another (``connect`` or ``broken``)."""
        RETRIES.labels(instance.service, reason).inc()

    def _ejected(self, instance: Instance, ejection: Ejection) -> None:
        self._rebuild()
        EJECTIONS.labels(instance.service, ejection.reason.value).inc()
        self._set_gauge(instance.app)
        self._wake.set()
        log.warning(
            "instance ejected",
            extra={
                "service": instance.service,
                "instance_id": instance.instance_id,
                "address": f"{instance.ip}:{instance.port}",
                "reason": ejection.reason.value,
                "ejection_s": ejection.duration_s,
                "ejections_in_a_row": ejection.times,
            },
        )

    def _set_gauge(self, app: str) -> None:
        EJECTED.labels(app.lower()).set(self.detector.ejected_count(app))

    # -- the end of an ejection ------------------------------------------------------------

    async def probe_due(self) -> None:
        """Probe every instance whose ejection time is up; reinstate or eject again."""
        due = self.detector.due(self.clock())
        if not due:
            return
        probed = [self._up[k] for k in due if k in self._up]
        results = await asyncio.gather(*(self._probe(i) for i in probed), return_exceptions=True)
        now = self.clock()
        for inst, ok in zip(probed, results, strict=True):
            key = key_of(inst)
            if ok is True:
                if self.detector.probe_succeeded(key, now):
                    log.info(
                        "instance back in rotation",
                        extra={"service": inst.service, "instance_id": inst.instance_id},
                    )
            else:
                again = self.detector.probe_failed(key, now)
                if again is not None:
                    self._ejected(inst, again)
            self._set_gauge(inst.app)
        self._rebuild()

    async def _run_prober(self) -> None:
        while True:
            due = self.detector.next_due()
            sleep_s = _PROBER_MAX_SLEEP_S if due is None else due - self.clock()
            if sleep_s > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(sleep_s, _PROBER_MAX_SLEEP_S))
                continue
            try:
                await self.probe_due()
            except Exception:
                log.exception("probing ejected instances failed")
                await asyncio.sleep(_PROBER_MAX_SLEEP_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_prober(), name="outlier-prober")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- for operators -------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Every service's UP instances with their routing state (the admin view)."""
        now = self.clock()
        services: dict[str, Any] = {}
        for app in sorted(self.table.known):
            up = self.table.up.get(app, ())
            routable = {key_of(i) for i in self.table.instances(app)}
            rows = []
            for inst in up:
                state = self.detector.state(key_of(inst)) or {}
                until = state.get("ejected_until")
                rows.append(
                    {
                        "instance_id": inst.instance_id,
                        "address": f"{inst.ip}:{inst.port}",
                        "routable": key_of(inst) in routable,
                        "ejected": until is not None,
                        "ejected_for_s": None
                        if not isinstance(until, float)
                        else round(max(until - now, 0.0), 3),
                        "probing": bool(state.get("probing", False)),
                        "ejections_in_a_row": state.get("ejections_in_a_row", 0),
                        "consecutive_failures": state.get("consecutive", {}),
                        **self._load_row(inst, now),
                    }
                )
            services[app.lower()] = {"instances": rows, "ejected": self.detector.ejected_count(app)}
        return services

    def _load_row(self, inst: Instance, now: float) -> dict[str, Any]:
        load = self.loads.get(key_of(inst))
        estimate = load.latency_s(now, self.decay_s) if load is not None else None
        return {
            "revision": revision_of(inst),
            "zone": inst.metadata.get(META_ZONE, ""),
            "weight": weight_of(inst),
            "outstanding": load.outstanding if load is not None else 0,
            "latency_ewma_ms": None if estimate is None else round(estimate * 1000.0, 3),
        }
