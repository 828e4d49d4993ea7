"""The registry's state: applications, instances, leases, overrides and recent changes.

:class:`InMemoryRegistry` implements :class:`aimp_registry.interface.RegistryStore`.
It is pure: the clock is injected, nothing here does I/O, and
every method runs to completion without awaiting, so it needs no lock on one loop.
Observers (the change stream, persistence) register listeners that are called
synchronously after each change, in version order.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Iterable, Mapping

from aimp_registry.documents import render_instance
from aimp_registry.interface import Change, ChangeListener, RenewOutcome
from aimp_registry.model import (
    ActionType,
    Clock,
    InstanceRecord,
    Lease,
    Registration,
    Status,
    apps_hashcode,
    effective_status,
)

log = logging.getLogger(__name__)


class InMemoryRegistry:
    """Eureka's registry semantics over plain dicts; app names are case-insensitive."""

    def __init__(
        self,
        clock: Clock,
        *,
        lease_duration_s: int = 90,
        renewal_interval_s: int = 30,
        delta_retention_s: float = 180.0,
    ) -> None:
        self._clock = clock
        self._lease_duration_s = lease_duration_s
        self._renewal_interval_s = renewal_interval_s
        self._retention_ms = int(delta_retention_s * 1000)
        self._apps: dict[str, dict[str, InstanceRecord]] = {}
        self._overrides: dict[tuple[str, str], Status] = {}
        self._changes: deque[Change] = deque()
        self._version = 0
        self._listeners: list[ChangeListener] = []

    # -- changes -----------------------------------------------------------------

    @property
    def version(self) -> int:
        """Grows by one on every change; served as ``versions__delta``."""
        return self._version

    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener(change)`` after every change, in version order."""
        self._listeners.append(listener)

    def _changed(self, rec: InstanceRecord, action: ActionType, now_ms: int) -> None:
        rec.action_type = action
        rec.last_updated_ms = now_ms
        self._version += 1
        change = Change(now_ms, rec.app, rec.instance_id, render_instance(rec), self._version)
        self._changes.append(change)
        self._purge_changes(now_ms)
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # an observer's bug must not undo or block the change
                log.exception("change listener failed", extra={"version": change.version})

    def _purge_changes(self, now_ms: int) -> None:
        while self._changes and self._changes[0].at_ms < now_ms - self._retention_ms:
            self._changes.popleft()

    def recent_changes(self) -> list[Change]:
        """Changes within the retention window, oldest first."""
        self._purge_changes(self._clock())
        return list(self._changes)

    # -- writes ------------------------------------------------------------------

    def register(self, registration: Registration) -> InstanceRecord:
        """Add or replace an instance, applying Eureka's dirty-timestamp and status rules."""
        now = self._clock()
        reg = registration
        key = (reg.app, reg.instance_id)
        instances = self._apps.setdefault(reg.app, {})
        existing = instances.get(reg.instance_id)
        document, metadata, reported, dirty = (
            reg.document,
            reg.metadata,
            reg.status,
            reg.last_dirty_ms,
        )
        if existing is not None and existing.last_dirty_ms > reg.last_dirty_ms:
            # Eureka keeps the document it already has when that one is newer.
            document, metadata = existing.document, existing.metadata
            reported, dirty = existing.status, existing.last_dirty_ms
        if reg.overridden_status != Status.UNKNOWN:
            self._overrides.setdefault(key, reg.overridden_status)
        override = self._overrides.get(key)
        status = effective_status(reported, override, existing.status if existing else None)
        lease = Lease(
            duration_s=reg.lease_duration_s or self._lease_duration_s,
            renewal_interval_s=reg.renewal_interval_s or self._renewal_interval_s,
            registration_ms=now,
            last_renewal_ms=now,
            service_up_ms=existing.lease.service_up_ms if existing else 0,
        )
        if status == Status.UP and not lease.service_up_ms:
            lease.service_up_ms = now
        rec = InstanceRecord(
            app=reg.app,
            instance_id=reg.instance_id,
            document=document,
            metadata=dict(metadata),
            status=status,
            overridden_status=override or Status.UNKNOWN,
            lease=lease,
            last_updated_ms=now,
            last_dirty_ms=dirty,
            action_type=ActionType.ADDED,
        )
        instances[reg.instance_id] = rec
        # A known instance registering again is announced as MODIFIED (Eureka says ADDED,
        # which eureka-js-client's delta merge ignores for an instance it already holds).
        self._changed(rec, ActionType.ADDED if existing is None else ActionType.MODIFIED, now)
        return rec

    def renew(
        self,
        app: str,
        instance_id: str,
        *,
        reported_status: Status | None = None,
        client_dirty_ms: int | None = None,
        replicated: bool = False,
    ) -> RenewOutcome:
        """A heartbeat. ``reported_status`` is the status the client says it has now.

        As in Eureka, an unknown instance or one whose status is UNKNOWN is not found
        (the client re-registers), and so is a client holding a newer document. A
        ``replicated`` heartbeat for an older document than ours is SERVER_NEWER (the
        peer must take our copy) and its status is not applied.
        """
        rec = self.instance(app, instance_id)
        if rec is None:
            return RenewOutcome.NOT_FOUND
        override = self._overrides.get((rec.app, rec.instance_id))
        status = effective_status(rec.status, override, rec.status)
        if status == Status.UNKNOWN:
            return RenewOutcome.NOT_FOUND
        now = self._clock()
        rec.lease.renew(now)
        outcome = RenewOutcome.RENEWED
        if client_dirty_ms is not None and client_dirty_ms > rec.last_dirty_ms:
            outcome = RenewOutcome.CLIENT_NEWER
        elif replicated and client_dirty_ms is not None and client_dirty_ms < rec.last_dirty_ms:
            outcome = RenewOutcome.SERVER_NEWER
        elif reported_status is not None:
            status = effective_status(reported_status, override, status)
        if status != rec.status:
            self._set_status(rec, status, now)
            self._changed(rec, ActionType.MODIFIED, now)
        return outcome

    def _set_status(self, rec: InstanceRecord, status: Status, now_ms: int) -> None:
        rec.status = status
        if status == Status.UP and not rec.lease.service_up_ms:
            rec.lease.service_up_ms = now_ms

    def set_status_override(
        self, app: str, instance_id: str, status: Status, *, client_dirty_ms: int | None = None
    ) -> bool:
        """Pin an instance's status (``PUT .../status?value=``); it survives re-registration."""
        rec = self.instance(app, instance_id)
        if rec is None:
            return False
        now = self._clock()
        rec.lease.renew(now)
        self._overrides[(rec.app, rec.instance_id)] = status
        changed = rec.status != status or rec.overridden_status != status
        rec.overridden_status = status
        self._set_status(rec, status, now)
        if client_dirty_ms is not None and client_dirty_ms > rec.last_dirty_ms:
            rec.last_dirty_ms = client_dirty_ms
        if changed:
            self._changed(rec, ActionType.MODIFIED, now)
        return True

    def delete_status_override(
        self,
        app: str,
        instance_id: str,
        *,
        new_status: Status = Status.UNKNOWN,
        client_dirty_ms: int | None = None,
    ) -> bool:
        """Remove an override; like Eureka the status becomes ``new_status`` (UNKNOWN),
        so the next heartbeat is answered not-found and the client re-registers."""
        rec = self.instance(app, instance_id)
        if rec is None:
            return False
        now = self._clock()
        rec.lease.renew(now)
        if self._overrides.pop((rec.app, rec.instance_id), None) is None:
            return True
        rec.overridden_status = Status.UNKNOWN
        self._set_status(rec, new_status, now)
        if client_dirty_ms is not None and client_dirty_ms > rec.last_dirty_ms:
            rec.last_dirty_ms = client_dirty_ms
        self._changed(rec, ActionType.MODIFIED, now)
        return True

    def update_metadata(self, app: str, instance_id: str, items: Mapping[str, str]) -> bool:
        """Merge ``items`` into the instance's metadata."""
        rec = self.instance(app, instance_id)
        if rec is None:
            return False
        now = self._clock()
        rec.lease.renew(now)
        merged = {**rec.metadata, **items}
        if merged != rec.metadata:
            rec.metadata = merged
            self._changed(rec, ActionType.MODIFIED, now)
        return True

    def _remove(self, rec: InstanceRecord, now_ms: int) -> None:
        instances = self._apps[rec.app]
        del instances[rec.instance_id]
        if not instances:
            del self._apps[rec.app]
        self._overrides.pop((rec.app, rec.instance_id), None)
        rec.lease.eviction_ms = now_ms
        self._changed(rec, ActionType.DELETED, now_ms)

    def cancel(self, app: str, instance_id: str) -> bool:
        """Remove an instance that is shutting down."""
        rec = self.instance(app, instance_id)
        if rec is None:
            return False
        self._remove(rec, self._clock())
        return True

    def evict_expired(self, limit: int | None = None) -> list[InstanceRecord]:
        """Remove instances whose lease has expired, at most ``limit`` of them (the
        longest silent first); returns the removed ones."""
        now = self._clock()
        expired = [
            rec
            for instances in self._apps.values()
            for rec in instances.values()
            if rec.lease.is_expired(now)
        ]
        if limit is not None and len(expired) > limit:
            expired.sort(key=lambda r: r.lease.last_renewal_ms)
            expired = expired[: max(0, limit)]
        for rec in expired:
            self._remove(rec, now)
        self._purge_changes(now)
        return expired

    def restore(self, records: Iterable[InstanceRecord], version: int) -> None:
        """Load persisted instances after a restart, without announcing them as changes.

        Each lease restarts now, so clients get a full lease duration to renew before
        the restart gap could count against them; overrides come back with the records.
        """
        now = self._clock()
        for rec in records:
            rec.lease.last_renewal_ms = now
            rec.lease.eviction_ms = 0
            self._apps.setdefault(rec.app, {})[rec.instance_id] = rec
            if rec.overridden_status != Status.UNKNOWN:
                self._overrides[(rec.app, rec.instance_id)] = rec.overridden_status
        self._version = max(self._version, version)

    # -- reads -------------------------------------------------------------------

    def applications(self) -> list[tuple[str, list[InstanceRecord]]]:
        """Every app (sorted by name) with its instances in registration order."""
        return [(name, list(self._apps[name].values())) for name in sorted(self._apps)]

    def application(self, app: str) -> list[InstanceRecord]:
        return list(self._apps.get(app.upper(), {}).values())

    def instance(self, app: str, instance_id: str) -> InstanceRecord | None:
        return self._apps.get(app.upper(), {}).get(instance_id)

    def find_instance(self, instance_id: str) -> InstanceRecord | None:
        for name in sorted(self._apps):
            if (rec := self._apps[name].get(instance_id)) is not None:
                return rec
        return None

    def size(self) -> int:
        """How many instances are registered."""
        return sum(len(i) for i in self._apps.values())

    def hashcode(self) -> str:
        """``apps__hashcode`` of the whole registry."""
        return apps_hashcode(r.status for i in self._apps.values() for r in i.values())

    def status_counts(self) -> dict[tuple[str, str], int]:
        """Instances per (app, status), for the metrics gauge."""
        return dict(
            Counter((r.app, r.status.value) for i in self._apps.values() for r in i.values())
        )
