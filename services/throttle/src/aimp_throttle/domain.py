"""Throttle policies and plans as values, the naming rules they follow, and their rules.

A **policy** limits calls of one client (``client_id``) to one service
(``service``); a missing client or service means all of them, and
``per_client`` gives each client its own bucket instead of one shared by all.
A **plan** is a named set of limits that clients are assigned to; each
assigned client gets the plan's limits across all services, unless a policy
for that very client overrides them. Which limits apply to a call is decided
in :mod:`aimp_core.ratelimit.policies` (shared with the gateway, which
enforces them in Redis).

Limits: ``rate`` in calls per second with bursts of ``burst`` calls (GCRA),
``quota_day`` and ``quota_month`` per UTC day and month, ``concurrency``
calls in flight, an optional warm-up ramp (``warmup_s``, starting at
``rate / cold_factor``), and ``on_redis_down``: whether calls pass through
a local limiter (``open``) or are refused (``closed``) while Redis is
unreachable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from aimp_core.errors import BadRequest
from aimp_core.ratelimit.policies import LimitFields, PlanRule, PolicyRule, RedisDownMode

__all__ = ["Limits", "Plan", "Policy", "RedisDownMode", "check_plan_id", "check_policy_id"]

POLICY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
POLICY_ID_RULE = "1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
#: Service names as the registry and role names use them (``invoke:<service>``).
SERVICE_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")
SERVICE_RULE = "1-63 characters of A-Z, a-z, 0-9, '_' and '-'"
#: Client ids are opaque to throttle: any visible ASCII, no spaces.
CLIENT_ID_RE = re.compile(r"[!-~]{1,128}")
CLIENT_ID_RULE = "1-128 visible ASCII characters (no spaces)"


def _check_id(kind: str, value: str) -> str:
    if POLICY_ID_RE.fullmatch(value) is None:
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise BadRequest(f"{kind} {shown!r} is not valid: use {POLICY_ID_RULE}")
    return value


def check_policy_id(policy_id: str) -> str:
    """``policy_id`` if it follows the rule, else a 400 saying what is allowed."""
    return _check_id("policy_id", policy_id)


def check_plan_id(plan_id: str) -> str:
    """``plan_id`` if it follows the rule (the same as policy ids), else a 400."""
    return _check_id("plan_id", plan_id)


def check_client_id(client_id: str) -> str:
    if CLIENT_ID_RE.fullmatch(client_id) is None:
        raise BadRequest(f"client_id is not valid: use {CLIENT_ID_RULE}")
    return client_id


@dataclass(frozen=True)
class Limits:
    """The limit numbers a policy or a plan stores."""

    rate: float
    burst: int
    quota_day: int | None
    quota_month: int | None
    concurrency: int | None
    warmup_s: float | None
    cold_factor: float
    #: When an explicit warm-up ramp was last started (POST .../warmup); None: never.
    warmup_started_at: datetime | None
    on_redis_down: RedisDownMode

    def fields(self) -> LimitFields:
        started = self.warmup_started_at
        return LimitFields(
            rate=self.rate,
            burst=self.burst,
            on_redis_down=self.on_redis_down,
            quota_day=self.quota_day,
            quota_month=self.quota_month,
            concurrency=self.concurrency,
            warmup_s=self.warmup_s,
            cold_factor=self.cold_factor,
            warm_epoch_s=started.timestamp() if started and self.warmup_s else None,
        )


@dataclass(frozen=True)
class Policy:
    """One stored throttle policy."""

    policy_id: str
    client_id: str | None
    service: str | None
    per_client: bool
    limits: Limits
    created_at: datetime
    updated_at: datetime

    def rule(self) -> PolicyRule:
        return PolicyRule(
            self.policy_id, self.client_id, self.service, self.per_client, self.limits.fields()
        )

    def scope(self) -> tuple[str, str, bool]:
        """What the policy limits; two policies may not share one."""
        return (self.client_id or "", self.service or "", self.per_client)


def describe_scope(client_id: str | None, service: str | None, per_client: bool) -> str:
    who = f"client '{client_id}'" if client_id else ("each client" if per_client else "all clients")
    what = f"service '{service}'" if service else "all services"
    return f"{who} on {what}"


@dataclass(frozen=True)
class Plan:
    """A named set of limits that clients are assigned to."""

    plan_id: str
    description: str
    limits: Limits
    created_at: datetime
    updated_at: datetime

    def rule(self) -> PlanRule:
        return PlanRule(self.plan_id, self.limits.fields())
