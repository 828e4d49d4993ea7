"""Throttle policies as values, and the naming rules they follow.

A policy limits calls of one client (``client_id``) to one service
(``service``); a missing client or service means all of them. ``rate`` is in
calls per second with bursts of up to ``burst`` calls (the GCRA / token-bucket
parameters), ``quota_day`` caps calls per UTC day, ``concurrency`` caps calls
in flight, and ``on_redis_down`` says whether calls pass (``open``) or are
refused (``closed``) when the limiter's Redis is unreachable.

This module only describes policies; enforcement (the rate algorithm in the
gateway, against Redis) is a later piece of work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aimp_core.errors import BadRequest

RedisDownMode = Literal["open", "closed"]

POLICY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
POLICY_ID_RULE = "1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
#: Service names as the registry and role names use them (``invoke:<service>``).
SERVICE_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")
SERVICE_RULE = "1-63 characters of A-Z, a-z, 0-9, '_' and '-'"
#: Client ids are opaque to throttle: any visible ASCII, no spaces.
CLIENT_ID_RE = re.compile(r"[!-~]{1,128}")
CLIENT_ID_RULE = "1-128 visible ASCII characters (no spaces)"


def check_policy_id(policy_id: str) -> str:
    """``policy_id`` if it follows the rule, else a 400 saying what is allowed."""
    if POLICY_ID_RE.fullmatch(policy_id) is None:
        shown = policy_id if len(policy_id) <= 80 else policy_id[:80] + "..."
        raise BadRequest(f"policy_id {shown!r} is not valid: use {POLICY_ID_RULE}")
    return policy_id


@dataclass(frozen=True)
class Policy:
    """One stored throttle policy."""

    policy_id: str
    client_id: str | None
    service: str | None
    rate: float
    burst: int
    quota_day: int | None
    concurrency: int | None
    on_redis_down: RedisDownMode
    created_at: datetime
    updated_at: datetime
