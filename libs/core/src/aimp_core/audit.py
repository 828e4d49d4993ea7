"""Audit trail: every admin change becomes one :class:`~aimp_core.events.AuditEvent`.

Writers call :meth:`AuditLog.record` after the change is stored; publishing
only enqueues (the publisher spools through Kafka outages), so auditing never
fails or slows an admin call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from aimp_core.events import TOPIC_AUDIT, AuditEvent


class Publisher(Protocol):
    def publish(self, topic: str, key: str, value: Mapping[str, Any] | bytes) -> None: ...


class AuditLog:
    """Turns admin changes into audit events on ``aimp.audit.v1``."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        request_id: str = "",
        before: Mapping[str, object] | None = None,
        after: Mapping[str, object] | None = None,
    ) -> AuditEvent:
        """Publish one change; ``before``/``after`` must be public views (no secrets)."""
        event = AuditEvent(
            event_id=uuid.uuid4().hex,
            ts=time.time(),
            actor=actor,
            action=action,
            target=target,
            request_id=request_id,
            before=dict(before) if before is not None else None,
            after=dict(after) if after is not None else None,
        )
        kind = target.split("/", 1)[0]
        self._publisher.publish(TOPIC_AUDIT, kind, event.model_dump())
        return event
