"""The gateway's routing state: registry view + outlier detector -> one immutable table.

:attr:`Router.table` is swapped, never changed: the data plane reads it without
locks (asyncio runs one callback at a time, and the swap is one assignment). A
new table is built when the registry changes (:meth:`update`) and when an
instance is ejected or reinstated. A background task probes instances whose
ejection time is up (a TCP connect, the same thing the ejection was about) and
puts them back in rotation or ejects them again for longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import Counter, Gauge

from aimp_core.registry_client import Instance
from aimp_gateway.outlier import Ejection, Failure, OutlierDetector, OutlierPolicy
from aimp_gateway.routing import (
    STATUS_UP,
    InstanceKey,
    RoundRobin,
    RoutingTable,
    build_table,
    key_of,
)

log = logging.getLogger(__name__)

Probe = Callable[[Instance], Awaitable[bool]]

EJECTIONS = Counter(
    "aimp_gateway_outlier_ejections_total",
    "Instances taken out of rotation by passive failure detection, by failure kind.",
    ["service", "reason"],
)
EJECTED = Gauge(
    "aimp_gateway_outlier_ejected",
    "Instances out of rotation now (ejected or probing), per service.",
    ["service"],
)
FAILURES = Counter(
    "aimp_gateway_upstream_failures_total",
    "Calls to an instance that failed (connect, gateway = broken or timed out, http_5xx).",
    ["service", "kind"],
)
RETRIES = Counter(
    "aimp_gateway_upstream_retries_total",
    "Calls sent to a second instance after the first failed: connect (never sent) or "
    "broken (an idempotent call whose connection broke).",
    ["service", "reason"],
)

#: The prober wakes at least this often, so a clock jump or a missed wake-up costs little.
_PROBER_MAX_SLEEP_S = 1.0


class Router:
    """Owns the routing table, the round robin and the outlier detector."""

    def __init__(
        self,
        policy: OutlierPolicy,
        *,
        probe: Probe,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.detector = OutlierDetector(policy)
        self.balancer = RoundRobin()
        self.table = RoutingTable()
        self._probe = probe
        self._clock = clock
        self._instances: tuple[Instance, ...] = ()
        self._up: dict[InstanceKey, Instance] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- the registry -----------------------------------------------------------------

    def update(self, instances: Iterable[Instance]) -> None:
        """The registry's instances changed: forget what left UP, rebuild the table."""
        self._instances = tuple(instances)
        up = {key_of(i): i for i in self._instances if i.status == STATUS_UP}
        for key, inst in up.items():
            before = self._up.get(key)
            if before is not None and (before.ip, before.port) != (inst.ip, inst.port):
                self.detector.reset(key)  # same id, new address: a new process
        self.detector.retain(up)
        self._up = up
        self._rebuild()

    def _rebuild(self) -> None:
        self.table = build_table(self._instances, self.detector.ejected_keys())

    # -- outcomes (the hot path) -------------------------------------------------------

    def answered(self, instance: Instance, status: int) -> None:
        """The instance answered ``status``.

        503 counts neither way: it is how a live sidecar sheds load (queue full) or
        drains; ejecting it for that would pile its share onto the others.
        """
        if status < 500:
            self.detector.success(key_of(instance), self._clock())
        elif status != 503:
            self.failed(instance, Failure.HTTP_5XX)

    def failed(self, instance: Instance, kind: Failure) -> None:
        """The call to ``instance`` failed in this way; may eject it."""
        FAILURES.labels(instance.service, kind.value).inc()
        key = key_of(instance)
        if key not in self._up:
            return  # no longer UP in the registry: nothing to decide
        up = len(self.table.up.get(instance.app, ()))
        ejection = self.detector.failure(key, instance.app, kind, up=up, now=self._clock())
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
        due = self.detector.due(self._clock())
        if not due:
            return
        probed = [self._up[k] for k in due if k in self._up]
        results = await asyncio.gather(*(self._probe(i) for i in probed), return_exceptions=True)
        now = self._clock()
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
            sleep_s = _PROBER_MAX_SLEEP_S if due is None else due - self._clock()
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
        now = self._clock()
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
                    }
                )
            services[app.lower()] = {"instances": rows, "ejected": self.detector.ejected_count(app)}
        return services
