"""Instance records as plain JSON values and back, for persistence (pure, no I/O).

A record keeps everything the registry knows about an instance: its document,
metadata, published and overridden status, lease and timestamps. The format is
versioned (``"v"``) so that a later layout can still read old rows.
"""

from __future__ import annotations

import json
from typing import Any

from aimp_registry.model import ActionType, InstanceRecord, Lease, Status

#: Layout of a persisted record; bump when it changes and keep reading older ones.
FORMAT_VERSION = 1


class CorruptRecord(ValueError):
    """A persisted row that cannot be turned back into a record."""


def record_to_json(rec: InstanceRecord) -> str:
    """The record as compact JSON text."""
    lease = rec.lease
    return json.dumps(
        {
            "v": FORMAT_VERSION,
            "app": rec.app,
            "instance_id": rec.instance_id,
            "document": rec.document,
            "metadata": rec.metadata,
            "status": rec.status.value,
            "overridden_status": rec.overridden_status.value,
            "lease": {
                "duration_s": lease.duration_s,
                "renewal_interval_s": lease.renewal_interval_s,
                "registration_ms": lease.registration_ms,
                "last_renewal_ms": lease.last_renewal_ms,
                "eviction_ms": lease.eviction_ms,
                "service_up_ms": lease.service_up_ms,
            },
            "last_updated_ms": rec.last_updated_ms,
            "last_dirty_ms": rec.last_dirty_ms,
            "action_type": rec.action_type.value,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def record_from_json(text: str) -> InstanceRecord:
    """The record written by :func:`record_to_json`; raises :class:`CorruptRecord`."""
    try:
        raw: dict[str, Any] = json.loads(text)
        if raw.get("v") != FORMAT_VERSION:
            raise CorruptRecord(f"unknown record format {raw.get('v')!r}")
        lease = raw["lease"]
        return InstanceRecord(
            app=str(raw["app"]),
            instance_id=str(raw["instance_id"]),
            document=dict(raw["document"]),
            metadata={str(k): str(v) for k, v in raw["metadata"].items()},
            status=Status(raw["status"]),
            overridden_status=Status(raw["overridden_status"]),
            lease=Lease(
                duration_s=int(lease["duration_s"]),
                renewal_interval_s=int(lease["renewal_interval_s"]),
                registration_ms=int(lease["registration_ms"]),
                last_renewal_ms=int(lease["last_renewal_ms"]),
                eviction_ms=int(lease["eviction_ms"]),
                service_up_ms=int(lease["service_up_ms"]),
            ),
            last_updated_ms=int(raw["last_updated_ms"]),
            last_dirty_ms=int(raw["last_dirty_ms"]),
            action_type=ActionType(raw["action_type"]),
        )
    except CorruptRecord:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptRecord(f"{type(exc).__name__}: {exc}") from None
