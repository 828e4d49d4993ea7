"""The lease sweeper: evicts expired instances unless self-preservation holds it back."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aimp_registry import metrics
from aimp_registry.interface import RegistryStore
from aimp_registry.model import Clock
from aimp_registry.preservation import (
    Preservation,
    RenewalMeter,
    decide,
    eviction_limit,
    expected_renewals,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreservationConfig:
    enabled: bool = True
    ratio: float = 0.85
    window_s: int = 60
    min_instances: int = 1


class Evictor:
    """One sweep at a time: decide self-preservation, then evict within Eureka's cap."""

    def __init__(
        self,
        store: RegistryStore,
        meter: RenewalMeter,
        config: PreservationConfig,
        clock: Clock,
    ) -> None:
        self.store = store
        self.meter = meter
        self.config = config
        self.clock = clock
        #: When this process started counting renewals (restarts start fresh).
        self.since_ms = clock()
        self.state = self.assess()

    def restart_counting(self) -> None:
        """Start self-preservation afresh (at process start, after loading state)."""
        self.since_ms = self.clock()
        self.state = self.assess()

    def assess(self) -> Preservation:
        now = self.clock()
        leases = (
            (r.lease.registration_ms, r.lease.renewal_interval_s)
            for _, items in self.store.applications()
            for r in items
        )
        expected = expected_renewals(
            leases, now_ms=now, since_ms=self.since_ms, window_s=self.config.window_s
        )
        return decide(
            enabled=self.config.enabled,
            ratio=self.config.ratio,
            expected=expected,
            renewals=self.meter.count(now),
            min_instances=self.config.min_instances,
        )

    def sweep(self) -> int:
        """Evict what may be evicted now; returns how many instances went."""
        was_active = self.state.active
        self.state = state = self.assess()
        metrics.publish_preservation(state)
        if state.active != was_active:
            figures = {
                "renewals_last_window": state.renewals,
                "threshold": round(state.threshold, 2),
                "expected": round(state.expected_renewals, 2),
            }
            if state.active:
                log.warning(
                    "self-preservation ON: renewals below threshold; eviction suspended",
                    extra=figures,
                )
            else:
                log.info("self-preservation off: eviction resumed", extra=figures)
        if state.active:
            return 0
        before = self.store.version
        evicted = self.store.evict_expired(
            limit=eviction_limit(self.store.size(), self.config.ratio)
        )
        for rec in evicted:
            log.info(
                "lease expired; instance evicted",
                extra={
                    "app": rec.app,
                    "instance_id": rec.instance_id,
                    "last_renewal_ms": rec.lease.last_renewal_ms,
                    "lease_duration_s": rec.lease.duration_s,
                },
            )
        if evicted:
            metrics.count("evict", amount=len(evicted))
        if self.store.version != before:
            metrics.publish_instances(self.store.status_counts())
        return len(evicted)


async def run_eviction(evictor: Evictor, interval_s: float) -> None:
    """Sweep every ``interval_s`` until cancelled; a failing sweep is logged, not fatal."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            evictor.sweep()
        except Exception:
            log.exception("eviction sweep failed; retrying on the next tick")
