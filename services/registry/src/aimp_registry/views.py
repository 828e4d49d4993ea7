"""Response bodies built from the store: applications, delta, VIP selections."""

from __future__ import annotations

from typing import Any

from aimp_registry.documents import render_applications, render_instance
from aimp_registry.interface import RegistryStore
from aimp_registry.model import InstanceRecord, apps_hashcode


def applications_body(
    store: RegistryStore,
    records: list[tuple[str, list[InstanceRecord]]],
    hashcode: str | None = None,
) -> dict[str, Any]:
    """Eureka's ``{"applications": ...}`` for ``records``; the hash code is theirs
    unless given (the full registry's, for ``GET /apps``)."""
    statuses = (r.status for _, items in records for r in items)
    return render_applications(
        store.version,
        apps_hashcode(statuses) if hashcode is None else hashcode,
        [(name, [render_instance(r) for r in items]) for name, items in records],
    )


def full_body(store: RegistryStore) -> dict[str, Any]:
    """The body of ``GET /eureka/apps``."""
    return applications_body(store, store.applications(), store.hashcode())


def delta_body(store: RegistryStore) -> dict[str, Any]:
    """The body of ``GET /eureka/apps/delta``: each changed instance once, newest state."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for change in store.recent_changes():
        latest.pop((change.app, change.instance_id), None)  # keep the newest, in change order
        latest[(change.app, change.instance_id)] = change.snapshot
    grouped: dict[str, list[dict[str, Any]]] = {}
    for (app_name, _), snapshot in latest.items():
        grouped.setdefault(app_name, []).append(snapshot)
    return render_applications(store.version, store.hashcode(), sorted(grouped.items()))


def by_vip(store: RegistryStore, field: str, vip: str) -> list[tuple[str, list[InstanceRecord]]]:
    """Apps and their instances whose ``field`` (a comma-separated list) names ``vip``."""
    out = []
    for name, items in store.applications():
        chosen = [
            r
            for r in items
            if vip in (v.strip() for v in str(r.document.get(field, "")).split(","))
        ]
        if chosen:
            out.append((name, chosen))
    return out
