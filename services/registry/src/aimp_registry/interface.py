"""The interface between the HTTP layer and a registry store.

The API depends only on :class:`RegistryStore`; replication, persistence, the
change stream and self-preservation observe it through change listeners.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from aimp_registry.model import InstanceRecord, Registration, Status


class RenewOutcome(StrEnum):
    """What a heartbeat achieved."""

    RENEWED = "renewed"
    #: The registry does not know the instance (or it is UNKNOWN): the client must re-register.
    NOT_FOUND = "not_found"
    #: The client's ``lastDirtyTimestamp`` is newer than ours: it must re-register its document.
    CLIENT_NEWER = "client_newer"
    #: A peer replicated a heartbeat for an older document than ours: it must take ours
    #: (409 with our instance). Only replicated heartbeats get this answer.
    SERVER_NEWER = "server_newer"


@dataclass(frozen=True)
class Change:
    """One entry of the recent-changes queue behind ``GET /eureka/apps/delta``."""

    at_ms: int
    app: str
    instance_id: str
    #: The rendered instance as it was right after the change, ``actionType`` included.
    snapshot: dict[str, Any]
    #: The registry's version right after this change (one more than the previous one).
    version: int = 0

    @property
    def action(self) -> str:
        """ADDED, MODIFIED or DELETED."""
        return str(self.snapshot.get("actionType", "MODIFIED"))


#: Called synchronously, on the registry's thread, after every change.
ChangeListener = Callable[[Change], None]


class RegistryStore(Protocol):
    """What the HTTP layer needs from a registry."""

    @property
    def version(self) -> int: ...
    def register(self, registration: Registration) -> InstanceRecord: ...
    def renew(
        self,
        app: str,
        instance_id: str,
        *,
        reported_status: Status | None = None,
        client_dirty_ms: int | None = None,
        replicated: bool = False,
    ) -> RenewOutcome: ...
    def cancel(self, app: str, instance_id: str) -> bool: ...
    def set_status_override(
        self, app: str, instance_id: str, status: Status, *, client_dirty_ms: int | None = None
    ) -> bool: ...
    def delete_status_override(
        self,
        app: str,
        instance_id: str,
        *,
        new_status: Status = Status.UNKNOWN,
        client_dirty_ms: int | None = None,
    ) -> bool: ...
    def update_metadata(self, app: str, instance_id: str, items: Mapping[str, str]) -> bool: ...
    def evict_expired(self, limit: int | None = None) -> list[InstanceRecord]: ...
    def restore(self, records: Iterable[InstanceRecord], version: int) -> None: ...
    def add_listener(self, listener: ChangeListener) -> None: ...
    def size(self) -> int: ...
    def applications(self) -> list[tuple[str, list[InstanceRecord]]]: ...
    def application(self, app: str) -> list[InstanceRecord]: ...
    def instance(self, app: str, instance_id: str) -> InstanceRecord | None: ...
    def find_instance(self, instance_id: str) -> InstanceRecord | None: ...
    def recent_changes(self) -> list[Change]: ...
    def hashcode(self) -> str: ...
    def status_counts(self) -> dict[tuple[str, str], int]: ...
