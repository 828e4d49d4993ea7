"""The registry's values and Eureka's decision rules: pure, no I/O, no clock.

Times are epoch milliseconds, as Eureka writes them. The status rules follow
Eureka's ``InstanceStatusOverrideRule`` chain so that clients see the same
statuses they would see from a Netflix Eureka server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: A clock returning the current time in epoch milliseconds.
Clock = Callable[[], int]


class Status(StrEnum):
    """Eureka's ``InstanceStatus``."""

    UP = "UP"
    DOWN = "DOWN"
    STARTING = "STARTING"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"
    UNKNOWN = "UNKNOWN"


class ActionType(StrEnum):
    """What the last change did to an instance, as shown in ``actionType``."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


STATUS_NAMES = ", ".join(s.value for s in Status)


def parse_status(value: str) -> Status | None:
    """The status named ``value`` (any case), or None if Eureka has no such status."""
    try:
        return Status(value.strip().upper())
    except ValueError:
        return None


@dataclass
class Lease:
    """An instance's lease, in Eureka's ``leaseInfo`` terms."""

    duration_s: int
    renewal_interval_s: int
    registration_ms: int
    last_renewal_ms: int
    eviction_ms: int = 0
    service_up_ms: int = 0

    def renew(self, now_ms: int) -> None:
        self.last_renewal_ms = now_ms

    def is_expired(self, now_ms: int) -> bool:
        """Expired once the last renewal is older than the lease duration."""
        return now_ms - self.last_renewal_ms > self.duration_s * 1000

    def as_document(self) -> dict[str, int]:
        return {
            "renewalIntervalInSecs": self.renewal_interval_s,
            "durationInSecs": self.duration_s,
            "registrationTimestamp": self.registration_ms,
            "lastRenewalTimestamp": self.last_renewal_ms,
            "evictionTimestamp": self.eviction_ms,
            "serviceUpTimestamp": self.service_up_ms,
        }


@dataclass(frozen=True)
class Registration:
    """A validated ``POST /eureka/apps/{APP}`` body.

    ``document`` holds the instance's own fields in Eureka's JSON shape; metadata and
    the fields the server manages (status, lease, timestamps, action) are kept apart.
    """

    app: str
    instance_id: str
    document: dict[str, Any]
    metadata: dict[str, str]
    status: Status
    overridden_status: Status
    last_dirty_ms: int
    lease_duration_s: int | None
    renewal_interval_s: int | None


@dataclass
class InstanceRecord:
    """One registered instance: its document plus what the server keeps about it."""

    app: str
    instance_id: str
    document: dict[str, Any]
    status: Status
    overridden_status: Status
    lease: Lease
    last_updated_ms: int
    last_dirty_ms: int
    action_type: ActionType
    metadata: dict[str, str] = field(default_factory=dict)


def effective_status(reported: Status, override: Status | None, existing: Status | None) -> Status:
    """The status to publish, by Eureka's rule chain.

    1. An instance that says it is DOWN or STARTING is believed (it knows it is unwell).
    2. Else an operator's override wins.
    3. Else a known instance that is UP or OUT_OF_SERVICE keeps that status
       (Eureka lets the server have its way there).
    4. Else the instance's own word.
    """
    if reported not in (Status.UP, Status.OUT_OF_SERVICE):
        return reported
    if override is not None:
        return override
    if existing in (Status.UP, Status.OUT_OF_SERVICE):
        return existing
    return reported


def apps_hashcode(statuses: Iterable[str]) -> str:
    """Eureka's reconcile hash code: ``STATUS_COUNT_`` per status, sorted by status name.

    For example one DOWN and three UP instances give ``DOWN_1_UP_3_``; no instance gives "".
    """
    counts = Counter(statuses)
    return "".join(f"{status}_{counts[status]}_" for status in sorted(counts))
