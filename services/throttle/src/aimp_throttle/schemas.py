"""HTTP shapes of throttle policies: what a caller sends, and what it gets back."""

from __future__ import annotations

from datetime import datetime
from re import Pattern
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .domain import (
    CLIENT_ID_RE,
    CLIENT_ID_RULE,
    SERVICE_RE,
    SERVICE_RULE,
    Policy,
    RedisDownMode,
)

#: Upper bounds that catch typos (a rate of 1e12/s is a mistake, not a policy).
MAX_RATE_PER_S = 1_000_000.0
MAX_BURST = 1_000_000_000
MAX_QUOTA_DAY = 10**12
MAX_CONCURRENCY = 1_000_000


def _matching(pattern: Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if pattern.fullmatch(value) is None:
            raise ValueError(f"must be {rule}")
        return value

    return AfterValidator(check)


ClientId = Annotated[str, _matching(CLIENT_ID_RE, CLIENT_ID_RULE)]
ServiceName = Annotated[str, _matching(SERVICE_RE, SERVICE_RULE)]


class PolicyCreate(BaseModel):
    """The body of ``PUT /admin/throttle/policies/{policy_id}`` (creates or replaces)."""

    # strict: 2.0 or "2" or true is not a burst; unknown fields are typos, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True)

    client_id: ClientId | None = Field(
        default=None, description="The client this limits; missing means every client."
    )
    service: ServiceName | None = Field(
        default=None, description="The service this limits; missing means every service."
    )
    rate: float = Field(
        gt=0, le=MAX_RATE_PER_S, allow_inf_nan=False, description="Sustained calls per second."
    )
    burst: int = Field(ge=1, le=MAX_BURST, description="Calls allowed at once above the rate.")
    quota_day: int | None = Field(
        default=None, ge=1, le=MAX_QUOTA_DAY, description="Calls per UTC day; missing: no cap."
    )
    concurrency: int | None = Field(
        default=None, ge=1, le=MAX_CONCURRENCY, description="Calls in flight; missing: no cap."
    )
    on_redis_down: RedisDownMode = Field(
        description="When Redis is unreachable: 'open' lets calls pass, 'closed' refuses them."
    )


class PolicyPublic(BaseModel):
    """A stored policy as the API returns it."""

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

    @classmethod
    def of(cls, policy: Policy) -> PolicyPublic:
        return cls(
            policy_id=policy.policy_id,
            client_id=policy.client_id,
            service=policy.service,
            rate=policy.rate,
            burst=policy.burst,
            quota_day=policy.quota_day,
            concurrency=policy.concurrency,
            on_redis_down=policy.on_redis_down,
            created_at=policy.created_at,
            updated_at=policy.updated_at,
        )


class PolicyList(BaseModel):
    """Every stored policy, ordered by id."""

    policies: list[PolicyPublic]
