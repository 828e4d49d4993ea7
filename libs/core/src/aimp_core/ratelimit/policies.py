"""Which limits apply to a call: policies, plans and the default, as pure values.

A call is made by client ``C`` to service ``S``. Up to four limits apply, one
per slot, and each slot takes the most specific rule that exists (a per-key
override beats the generic rule of its slot):

1. client and service: the policy for ``C`` and ``S``; else a ``per_client``
   policy for ``S`` (each client its own bucket).
2. client, across services: the policy for ``C`` with no service; else the
   plan ``C`` is assigned to; else a ``per_client`` policy with neither client
   nor service; else the caller's configured default (the gateway's
   settings-based per-client limit). So every client always has one.
3. service, shared by all clients: the policy for ``S`` with no client.
4. everything, shared: the policy with neither client nor service.

If two policies claim the same slot (the throttle service refuses that), the
smallest policy id wins, so every process resolves alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from aimp_core.ratelimit.limits import DEFAULT_COLD_FACTOR, LimitSpec

RedisDownMode = Literal["open", "closed"]
#: Redis key prefix of every limiter key.
KEY_PREFIX = "aimp:thr:"
#: The name the built-in default limit carries in headers and errors.
DEFAULT_NAME = "client-rate"


@dataclass(frozen=True)
class LimitFields:
    """The numbers a policy, a plan or the default sets, in policy units."""

    rate: float
    burst: int
    on_redis_down: RedisDownMode = "open"
    quota_day: int | None = None
    quota_month: int | None = None
    concurrency: int | None = None
    warmup_s: float | None = None
    cold_factor: float = DEFAULT_COLD_FACTOR
    #: When an explicit warm-up ramp was started (seconds since the epoch).
    warm_epoch_s: float | None = None

    def spec(self) -> LimitSpec:
        return LimitSpec.of(
            self.rate,
            self.burst,
            quota_day=self.quota_day,
            quota_month=self.quota_month,
            concurrency=self.concurrency,
            warmup_s=self.warmup_s,
            cold_factor=self.cold_factor,
            warm_epoch_s=self.warm_epoch_s,
        )


@dataclass(frozen=True)
class PolicyRule:
    policy_id: str
    client_id: str | None
    service: str | None
    per_client: bool
    limits: LimitFields


@dataclass(frozen=True)
class PlanRule:
    plan_id: str
    limits: LimitFields


@dataclass(frozen=True)
class Snapshot:
    """Every rule, as the throttle service publishes it and each enforcer holds it."""

    policies: tuple[PolicyRule, ...] = ()
    plans: Mapping[str, PlanRule] = field(default_factory=dict)
    #: client id -> plan id
    assignments: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        doc = {
            "policies": [asdict(p) for p in sorted(self.policies, key=lambda p: p.policy_id)],
            "plans": [asdict(self.plans[k]) for k in sorted(self.plans)],
            "assignments": dict(sorted(self.assignments.items())),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @property
    def version(self) -> str:
        """A content hash: equal snapshots have equal versions, whoever published them."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str | bytes) -> Snapshot:
        doc = json.loads(text)
        return cls(
            policies=tuple(
                PolicyRule(**{**p, "limits": LimitFields(**p["limits"])}) for p in doc["policies"]
            ),
            plans={
                p["plan_id"]: PlanRule(p["plan_id"], LimitFields(**p["limits"]))
                for p in doc["plans"]
            },
            assignments=dict(doc["assignments"]),
        )


@dataclass(frozen=True)
class Applied:
    """One limit that applies to a call, ready for the script."""

    #: Shown in RateLimit headers and errors: the policy id, ``plan:<id>`` or the default.
    name: str
    #: Human words for where it comes from, e.g. "policy 'p1' (client demo, all services)".
    source: str
    state_key: str
    lease_key: str | None
    spec: LimitSpec
    fields: LimitFields

    @property
    def fail_open(self) -> bool:
        return self.fields.on_redis_down == "open"


def _applied(name: str, source: str, owner: str, bucket: str, fields: LimitFields) -> Applied:
    spec = fields.spec()
    lease = f"{KEY_PREFIX}l:{owner}|{bucket}" if spec.concurrency else None
    return Applied(name, source, f"{KEY_PREFIX}s:{owner}|{bucket}", lease, spec, fields)


def _scope(rule: PolicyRule) -> str:
    who = f"client {rule.client_id}" if rule.client_id else "all clients"
    if rule.client_id is None and rule.per_client:
        who = "each client"
    what = f"service {rule.service}" if rule.service else "all services"
    return f"policy '{rule.policy_id}' ({who}, {what})"


class Resolver:
    """Answers "which limits apply to (client, service)" for one snapshot."""

    def __init__(self, snapshot: Snapshot, default: LimitFields | None) -> None:
        self.snapshot = snapshot
        self.default = default
        self._pair: dict[tuple[str, str], PolicyRule] = {}
        self._client: dict[str, PolicyRule] = {}
        self._each_service: dict[str, PolicyRule] = {}
        self._service: dict[str, PolicyRule] = {}
        self._each: PolicyRule | None = None
        self._all: PolicyRule | None = None
        for rule in sorted(snapshot.policies, key=lambda p: p.policy_id, reverse=True):
            # Reverse order: the smallest id is written last and wins a contested slot.
            c, s = rule.client_id, rule.service
            if c is not None and s is not None:
                self._pair[(c, s)] = rule
            elif c is not None:
                self._client[c] = rule
            elif s is not None:
                (self._each_service if rule.per_client else self._service)[s] = rule
            elif rule.per_client:
                self._each = rule
            else:
                self._all = rule

    def _policy(self, rule: PolicyRule, client_id: str) -> Applied:
        bucket = client_id if rule.client_id is None and rule.per_client else "*"
        return _applied(rule.policy_id, _scope(rule), f"p:{rule.policy_id}", bucket, rule.limits)

    def client_limit(self, client_id: str) -> Applied | None:
        """Slot 2: the client's limit across all services."""
        rule = self._client.get(client_id)
        if rule is not None:
            return self._policy(rule, client_id)
        plan_id = self.snapshot.assignments.get(client_id)
        plan = self.snapshot.plans.get(plan_id) if plan_id else None
        if plan is not None:
            source = f"plan '{plan.plan_id}' (client {client_id}, all services)"
            return _applied(f"plan:{plan.plan_id}", source, f"plan:{plan.plan_id}",
                            client_id, plan.limits)  # fmt: skip
        if self._each is not None:
            return self._policy(self._each, client_id)
        if self.default is not None:
            source = f"the default limit (client {client_id}, all services)"
            return _applied(DEFAULT_NAME, source, "default", client_id, self.default)
        return None

    def applicable(self, client_id: str, service: str) -> tuple[Applied, ...]:
        """Every limit that applies to one call, most specific first."""
        out: list[Applied] = []
        pair = self._pair.get((client_id, service)) or self._each_service.get(service)
        if pair is not None:
            out.append(self._policy(pair, client_id))
        client = self.client_limit(client_id)
        if client is not None:
            out.append(client)
        for rule in (self._service.get(service), self._all):
            if rule is not None:
                out.append(self._policy(rule, client_id))
        return tuple(out)

    def for_client(self, client_id: str) -> tuple[Applied, ...]:
        """The client's own limits whatever the service: slot 2 and its per-service overrides."""
        out = [
            self._policy(rule, client_id)
            for (c, _), rule in sorted(self._pair.items())
            if c == client_id
        ]
        client = self.client_limit(client_id)
        return (*out, client) if client is not None else tuple(out)
