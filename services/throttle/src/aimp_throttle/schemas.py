"""HTTP shapes of throttle policies and plans: what a caller sends, and what it gets back."""

from __future__ import annotations

from datetime import datetime
from re import Pattern
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from aimp_core.ratelimit.limits import (
    DEFAULT_COLD_FACTOR,
    MAX_BURST,
    MAX_COLD_FACTOR,
    MAX_CONCURRENCY,
    MAX_QUOTA,
    MAX_RATE_PER_S,
    MAX_WARMUP_S,
    MIN_RATE_PER_S,
)

from .domain import (
    CLIENT_ID_RE,
    CLIENT_ID_RULE,
    SERVICE_RE,
    SERVICE_RULE,
    Limits,
    Plan,
    Policy,
    RedisDownMode,
)


def _matching(pattern: Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if pattern.fullmatch(value) is None:
            raise ValueError(f"must be {rule}")
        return value

    return AfterValidator(check)


ClientId = Annotated[str, _matching(CLIENT_ID_RE, CLIENT_ID_RULE)]
ServiceName = Annotated[str, _matching(SERVICE_RE, SERVICE_RULE)]


class LimitsBody(BaseModel):
    """The limit fields policies and plans share."""

    # strict: 2.0 or "2" or true is not a burst; unknown fields are typos, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True)

    rate: float = Field(
        ge=MIN_RATE_PER_S,
        le=MAX_RATE_PER_S,
        allow_inf_nan=False,
        description="Sustained calls per second (0.001 to 1e6).",
    )
    burst: int = Field(ge=1, le=MAX_BURST, description="Calls allowed at once above the rate.")
    quota_day: int | None = Field(
        default=None, ge=1, le=MAX_QUOTA, description="Calls per UTC day; missing: no cap."
    )
    quota_month: int | None = Field(
        default=None, ge=1, le=MAX_QUOTA, description="Calls per UTC month; missing: no cap."
    )
    concurrency: int | None = Field(
        default=None, ge=1, le=MAX_CONCURRENCY, description="Calls in flight; missing: no cap."
    )
    warmup_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_WARMUP_S,
        allow_inf_nan=False,
        description=(
            "Warm-up ramp: after this long without calls (or POST .../warmup) the rate starts "
            "at rate / cold_factor and climbs linearly to rate over warmup_s."
        ),
    )
    cold_factor: float = Field(
        default=DEFAULT_COLD_FACTOR,
        ge=1,
        le=MAX_COLD_FACTOR,
        allow_inf_nan=False,
        description="How much slower a cold limit starts (Sentinel's coldFactor, default 3).",
    )
    on_redis_down: RedisDownMode = Field(
        description=(
            "When Redis is unreachable: 'open' lets calls pass through a local limiter "
            "(rate divided among live gateways), 'closed' refuses them with 503."
        )
    )

    def limits(self, warmup_started_at: datetime | None = None) -> Limits:
        return Limits(
            rate=self.rate,
            burst=self.burst,
            quota_day=self.quota_day,
            quota_month=self.quota_month,
            concurrency=self.concurrency,
            warmup_s=self.warmup_s,
            cold_factor=self.cold_factor,
            warmup_started_at=warmup_started_at,
            on_redis_down=self.on_redis_down,
        )


class PolicyCreate(LimitsBody):
    """The body of ``PUT /admin/throttle/policies/{policy_id}`` (creates or replaces)."""

    client_id: ClientId | None = Field(
        default=None, description="The client this limits; missing means every client."
    )
    service: ServiceName | None = Field(
        default=None, description="The service this limits; missing means every service."
    )
    per_client: bool = Field(
        default=False,
        description=(
            "Without client_id: true gives each client its own bucket of these limits, "
            "false makes all clients share one."
        ),
    )

    @model_validator(mode="after")
    def _per_client_needs_all_clients(self) -> PolicyCreate:
        if self.per_client and self.client_id is not None:
            raise ValueError(
                "per_client applies only to policies without client_id; drop one of them"
            )
        return self


def _limits_public(limits: Limits) -> dict[str, Any]:
    return {
        "rate": limits.rate,
        "burst": limits.burst,
        "quota_day": limits.quota_day,
        "quota_month": limits.quota_month,
        "concurrency": limits.concurrency,
        "warmup_s": limits.warmup_s,
        "cold_factor": limits.cold_factor,
        "warmup_started_at": limits.warmup_started_at,
        "on_redis_down": limits.on_redis_down,
    }


class LimitsPublic(BaseModel):
    rate: float
    burst: int
    quota_day: int | None
    quota_month: int | None
    concurrency: int | None
    warmup_s: float | None
    cold_factor: float
    warmup_started_at: datetime | None
    on_redis_down: RedisDownMode


class PolicyPublic(LimitsPublic):
    """A stored policy as the API returns it."""

    policy_id: str
    client_id: str | None
    service: str | None
    per_client: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, policy: Policy) -> PolicyPublic:
        return cls(
            policy_id=policy.policy_id,
            client_id=policy.client_id,
            service=policy.service,
            per_client=policy.per_client,
            created_at=policy.created_at,
            updated_at=policy.updated_at,
            **_limits_public(policy.limits),
        )


class PolicyList(BaseModel):
    """Every stored policy, ordered by id."""

    policies: list[PolicyPublic]


class PlanCreate(LimitsBody):
    """The body of ``PUT /admin/throttle/plans/{plan_id}``: limits per assigned client."""

    description: str = Field(default="", max_length=500, description="What the plan is for.")


class PlanPublic(LimitsPublic):
    plan_id: str
    description: str
    clients: int = Field(description="How many clients are assigned to the plan.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, plan: Plan, clients: int) -> PlanPublic:
        return cls(
            plan_id=plan.plan_id,
            description=plan.description,
            clients=clients,
            created_at=plan.created_at,
            updated_at=plan.updated_at,
            **_limits_public(plan.limits),
        )


class PlanList(BaseModel):
    plans: list[PlanPublic]
