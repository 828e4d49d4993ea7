"""Kafka topics and event schemas (DESIGN.md): JSON values, key = service name."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

TOPIC_REQUESTS = "aimp.requests.v1"
TOPIC_BACKFLOW = "aimp.backflow.v1"
TOPIC_SCALING = "aimp.scaling.v1"
TOPIC_ALARMS = "aimp.alarms.v1"
TOPIC_AUDIT = "aimp.audit.v1"
ALL_TOPICS = (TOPIC_REQUESTS, TOPIC_BACKFLOW, TOPIC_SCALING, TOPIC_ALARMS, TOPIC_AUDIT)

Outcome = Literal[
    "ok",
    "client_error",
    "upstream_error",
    "unauthorized",
    "forbidden",
    "throttled",
    "not_found",
    "unavailable",
    "timeout",
    #: The gateway's fuses refused the call and the service's configured fallback answered.
    "fallback",
]


class RequestEvent(BaseModel):
    """One event per gateway call, on ``aimp.requests.v1``."""

    event_id: str = Field(description="Unique per call; consumers deduplicate on it.")
    ts: float = Field(description="Unix time (s) the gateway received the call.")
    trace_id: str
    request_id: str
    client_id: str
    service: str
    revision: str = ""
    instance_id: str = ""
    status: int
    latency_ms: float = Field(description="Time inside the gateway, first byte in to last out.")
    upstream_ms: float = Field(description="Time waiting on the upstream pod; 0 if none called.")
    bytes_in: int
    bytes_out: int
    outcome: Outcome


class AuditEvent(BaseModel):
    """One event per admin change, on ``aimp.audit.v1`` (key = the changed object's kind).

    ``before`` and ``after`` never hold secrets: writers pass public views only.
    """

    event_id: str = Field(description="Unique per change; consumers deduplicate on it.")
    ts: float = Field(description="Unix time (s) of the change.")
    actor: str = Field(description="The token subject that made the change.")
    action: str = Field(description="What was done, e.g. 'client.create', 'config.rollback'.")
    target: str = Field(description="What it was done to, e.g. 'client/shop-app'.")
    request_id: str = ""
    before: dict[str, object] | None = None
    after: dict[str, object] | None = None
