"""The background task that drops instances whose leases have expired."""

from __future__ import annotations

import asyncio
import logging

from aimp_registry import metrics
from aimp_registry.interface import RegistryStore

log = logging.getLogger(__name__)


def evict_once(store: RegistryStore) -> int:
    """One sweep: evict expired leases, log and count them; returns how many went."""
    before = store.version
    evicted = store.evict_expired()
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
    if store.version != before:
        metrics.publish_instances(store.status_counts())
    return len(evicted)


async def run_eviction(store: RegistryStore, interval_s: float) -> None:
    """Sweep every ``interval_s`` until cancelled; a failing sweep is logged, not fatal."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            evict_once(store)
        except Exception:
            log.exception("eviction sweep failed; retrying on the next tick")
