"""The config center's documents: what an admin writes, validated, and turned into policy values.

``ServiceConfigWrite`` and ``RouteWrite`` are the bodies of ``PUT`` (create or
replace); ``*Public`` add what the server knows (name, version). A whole
configuration (:class:`ConfigDocument`) is what each stored version holds;
:func:`to_snapshot` turns it into the :class:`~aimp_gateway.policy.ConfigSnapshot`
the data plane reads. Every limit below says why it is there.
"""

from __future__ import annotations

from base64 import b64decode
from datetime import datetime
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aimp_core.ratelimit.limits import MAX_BURST, MAX_RATE_PER_S, MIN_RATE_PER_S
from aimp_gateway.policy import (
    DEFAULT_PIN_HEADER,
    BreakerPolicy,
    ConfigSnapshot,
    FallbackPolicy,
    HeaderMatch,
    LbAlgorithm,
    RetryPolicy,
    RevisionWeight,
    Route,
    ServicePolicy,
    ThrottleDefault,
)
from aimp_gateway.routes import normalize_prefix, reserved_conflict

#: A service name is a DNS label (it names Kubernetes objects and registry apps).
SERVICE_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
#: Route ids: short, URL-safe, readable in logs.
ROUTE_ID_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$"
#: A header name is an RFC 9110 token.
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"
#: A path prefix: absolute, made of characters that need no percent-encoding.
PATH_PATTERN = r"^/[A-Za-z0-9._~!$&'()*+,;=:@/-]{0,255}$"
#: Longer than any sane call (an hour): a bigger number is a typo in units.
MAX_TIMEOUT_S = 3600.0
#: Fallback bodies are answered from memory on every refused call: keep them small.
MAX_FALLBACK_BODY_BYTES = 64 * 1024

Service = Annotated[str, Field(pattern=SERVICE_PATTERN, examples=["resnet"])]
RouteId = Annotated[str, Field(pattern=ROUTE_ID_PATTERN, examples=["shop-api"])]
TimeoutS = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)]
Percent = Annotated[float, Field(ge=1, le=100)]
Size = Annotated[int, Field(ge=1, le=100_000)]


class _Doc(BaseModel):
    """Unknown fields are refused: a misspelt setting must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class BreakerDoc(_Doc):
    """A circuit breaker (see :class:`~aimp_gateway.policy.BreakerPolicy` for the semantics)."""

    window: Literal["count", "time"] = "count"
    window_size: Size = BreakerPolicy.window_size
    minimum_calls: Size = BreakerPolicy.minimum_calls
    failure_rate_percent: Percent = BreakerPolicy.failure_rate_percent
    slow_call_rate_percent: Percent = BreakerPolicy.slow_call_rate_percent
    slow_call_s: TimeoutS = BreakerPolicy.slow_call_s
    open_wait_s: TimeoutS = BreakerPolicy.open_wait_s
    half_open_calls: Size = BreakerPolicy.half_open_calls

    @model_validator(mode="after")
    def _minimum_fits_window(self) -> Self:
        if self.window == "count" and self.minimum_calls > self.window_size:
            raise ValueError(
                f"minimum_calls ({self.minimum_calls}) is larger than the count window "
                f"({self.window_size}), so the breaker could never open; lower minimum_calls "
                "or raise window_size"
            )
        return self

    def to_policy(self) -> BreakerPolicy:
        return BreakerPolicy(**self.model_dump())


class RetryDoc(_Doc):
    """Second tries: only connect failures or idempotent calls, within a budget."""

    #: Tries in all; 5 is plenty (more only multiplies load on a failing service).
    attempts: Annotated[int, Field(ge=1, le=5)] = RetryPolicy.attempts
    budget_percent: Annotated[float, Field(ge=0, le=100)] = RetryPolicy.budget_percent
    min_retries_per_s: Annotated[float, Field(ge=0, le=10_000)] = RetryPolicy.min_retries_per_s

    def to_policy(self) -> RetryPolicy:
        return RetryPolicy(**self.model_dump())


class FallbackDoc(_Doc):
    """The fixed answer given instead of an error; ``body`` is text, or base64 with ``base64``."""

    status: Annotated[int, Field(ge=200, le=599)] = 200
    content_type: Annotated[str, Field(min_length=1, max_length=255)] = "application/json"
    body: Annotated[str, Field(max_length=MAX_FALLBACK_BODY_BYTES * 2)] = ""
    base64: bool = False

    @model_validator(mode="after")
    def _body_decodes(self) -> Self:
        if len(self.body_bytes()) > MAX_FALLBACK_BODY_BYTES:
            raise ValueError(
                f"the fallback body is larger than {MAX_FALLBACK_BODY_BYTES} bytes; "
                "keep fallback answers small"
            )
        return self

    def body_bytes(self) -> bytes:
        if not self.base64:
            return self.body.encode()
        try:
            return b64decode(self.body, validate=True)
        except ValueError:
            raise ValueError(
                "fallback body is not valid base64; encode it or set base64 to false"
            ) from None

    def to_policy(self) -> FallbackPolicy:
        return FallbackPolicy(self.status, self.content_type, self.body_bytes())


class RevisionWeightDoc(_Doc):
    revision: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9._-]+$")]
    weight: Annotated[int, Field(ge=0, le=1_000_000)]


class ServiceConfigWrite(_Doc):
    """``PUT /admin/config/services/{service}``: how the gateway calls one service."""

    lb: LbAlgorithm = LbAlgorithm.LEAST_OUTSTANDING
    zone_aware: bool = True
    #: Traffic split between revisions, e.g. 90/10 for a canary; empty = every UP instance.
    revisions: list[RevisionWeightDoc] = Field(default_factory=list, max_length=64)
    pin_header: Annotated[str, Field(pattern=HEADER_NAME_PATTERN)] = DEFAULT_PIN_HEADER
    breaker: BreakerDoc | None = Field(default_factory=BreakerDoc)
    instance_breaker: BreakerDoc | None = None
    max_concurrent: Size | None = None
    timeout_s: TimeoutS | None = None
    retry: RetryDoc = Field(default_factory=RetryDoc)
    fallback: FallbackDoc | None = None

    @field_validator("pin_header")
    @classmethod
    def _lower_header(cls, value: str) -> str:
        return value.lower()

    @field_validator("revisions")
    @classmethod
    def _weights(cls, revisions: list[RevisionWeightDoc]) -> list[RevisionWeightDoc]:
        names = [r.revision for r in revisions]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"revision {repeated[0]!r} is listed twice; list each revision once")
        if revisions and not any(r.weight for r in revisions):
            raise ValueError(
                "every revision weight is 0, so no call could be routed; give at least one "
                "revision a weight above 0 (or send an empty list to use every instance)"
            )
        return revisions

    def to_policy(self) -> ServicePolicy:
        return ServicePolicy(
            lb=self.lb,
            zone_aware=self.zone_aware,
            revisions=tuple(RevisionWeight(r.revision, r.weight) for r in self.revisions),
            pin_header=self.pin_header,
            breaker=self.breaker.to_policy() if self.breaker else None,
            instance_breaker=self.instance_breaker.to_policy() if self.instance_breaker else None,
            max_concurrent=self.max_concurrent,
            timeout_s=self.timeout_s,
            retry=self.retry.to_policy(),
            fallback=self.fallback.to_policy() if self.fallback else None,
        )


class ServiceConfigPublic(ServiceConfigWrite):
    """A service's stored configuration, with its name and the version it is part of."""

    model_config = ConfigDict(extra="ignore")
    service: str
    version: int


class HeaderMatchDoc(_Doc):
    """A header the request must carry; any value when ``value`` is absent."""

    name: Annotated[str, Field(pattern=HEADER_NAME_PATTERN)]
    value: Annotated[str, Field(max_length=1024)] | None = None

    @field_validator("name")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @field_validator("value")
    @classmethod
    def _latin1(cls, value: str | None) -> str | None:
        if value is not None and not value.isascii():
            raise ValueError("header values must be ASCII (HTTP/1.1 carries them as bytes)")
        return value


Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class RouteWrite(_Doc):
    """``PUT /admin/config/routes/{route_id}``: which calls go to which service, how rewritten."""

    path_prefix: Annotated[str, Field(pattern=PATH_PATTERN, examples=["/shop"])]
    service: Service
    hosts: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=64
    )
    headers: list[HeaderMatchDoc] = Field(default_factory=list, max_length=32)
    methods: list[Method] = Field(default_factory=list)
    #: The forwarded path is this + the part after ``path_prefix``; absent keeps the path.
    rewrite_prefix: Annotated[str, Field(pattern=PATH_PATTERN)] | None = None
    #: Among routes with the same prefix, the lower number wins.
    priority: Annotated[int, Field(ge=0, le=1_000_000)] = 100
    timeout_s: TimeoutS | None = None

    @field_validator("path_prefix")
    @classmethod
    def _free_prefix(cls, value: str) -> str:
        value = normalize_prefix(value)
        reserved = reserved_conflict(value)
        if reserved is not None:
            raise ValueError(
                f"path_prefix {value!r} overlaps {reserved!r}, which the gateway answers "
                "itself; choose a prefix outside /v2, /svc, /oauth, /admin, /.well-known, "
                "/console, /healthz, /readyz, /metrics, /docs, /redoc and /openapi.json"
            )
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not host.isascii() or any(c in host for c in " /?#@"):
                raise ValueError(f"host {host!r} is not a host name; write e.g. shop.example.com")
            if ":" in host and not host.startswith("["):
                raise ValueError(
                    f"host {host!r} has a port; hosts match without the port, write the name only"
                )
        return sorted({h.lower() for h in hosts})

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: list[str]) -> list[str]:
        return sorted(set(methods))

    def to_route(self, route_id: str) -> Route:
        return Route(
            route_id=route_id,
            path_prefix=self.path_prefix,
            service=self.service,
            hosts=tuple(self.hosts),
            headers=tuple(HeaderMatch(h.name, h.value) for h in self.headers),
            methods=tuple(self.methods),
            rewrite_prefix=self.rewrite_prefix,
            priority=self.priority,
            timeout_s=self.timeout_s,
        )


class RoutePublic(RouteWrite):
    """A stored route, with its id and the version it is part of."""

    model_config = ConfigDict(extra="ignore")
    route_id: str
    version: int


class RouteEntry(RouteWrite):
    """A route inside a whole configuration document (its id included)."""

    route_id: RouteId


class ThrottleConfigWrite(_Doc):
    """``PUT /admin/config/throttle``: the default limit of clients no throttle policy or plan
    covers. A field left out keeps this gateway's setting (``AIMP_GATEWAY_RATE_PER_S``,
    ``AIMP_GATEWAY_RATE_BURST``, ``AIMP_GATEWAY_THROTTLE_FAIL_OPEN``). Bounds are the
    throttle service's for policies, so the default is a limit a policy could also be."""

    default_rate_per_s: (
        Annotated[
            float,
            Field(
                ge=MIN_RATE_PER_S,
                le=MAX_RATE_PER_S,
                allow_inf_nan=False,
                description="Sustained calls per second per client (0.001 to 1e6).",
            ),
        ]
        | None
    ) = None
    default_burst: (
        Annotated[
            int,
            Field(ge=1, le=MAX_BURST, description="Calls a client may send at once (1 to 1e6)."),
        ]
        | None
    ) = None
    on_redis_down: Literal["open", "closed"] | None = Field(
        default=None,
        description=(
            "When Redis is unreachable: 'open' lets calls through a local limiter "
            "(the rate divided among live gateways), 'closed' refuses them with 503."
        ),
    )

    def to_policy(self) -> ThrottleDefault:
        return ThrottleDefault(self.default_rate_per_s, self.default_burst, self.on_redis_down)


class ThrottleConfigPublic(ThrottleConfigWrite):
    """The stored throttle block, its version, and the default this gateway applies."""

    model_config = ConfigDict(extra="ignore")
    version: int
    #: What is in force here: the stored values, the settings' for fields left out.
    effective_rate_per_s: float
    effective_burst: int
    effective_on_redis_down: Literal["open", "closed"]


class ConfigDocument(_Doc):
    """A whole configuration: what each stored version holds, and ``PUT /admin/config``'s body."""

    services: dict[Service, ServiceConfigWrite] = Field(default_factory=dict)
    routes: list[RouteEntry] = Field(default_factory=list, max_length=10_000)
    #: Versions stored before this block existed read as "all from the settings".
    throttle: ThrottleConfigWrite = Field(default_factory=ThrottleConfigWrite)

    @field_validator("routes")
    @classmethod
    def _unique_ids(cls, routes: list[RouteEntry]) -> list[RouteEntry]:
        seen: set[str] = set()
        for route in routes:
            if route.route_id in seen:
                raise ValueError(
                    f"route id {route.route_id!r} appears twice; route ids must be unique"
                )
            seen.add(route.route_id)
        return sorted(routes, key=lambda r: r.route_id)

    def route(self, route_id: str) -> RouteEntry | None:
        return next((r for r in self.routes if r.route_id == route_id), None)

    def dump(self) -> dict[str, Any]:
        """The JSON form stored in SQL (defaults written out, so a version is self-contained)."""
        return self.model_dump(mode="json")


class ConfigPublic(ConfigDocument):
    """``GET /admin/config``: the newest stored version, and the one this gateway applies."""

    model_config = ConfigDict(extra="ignore")
    version: int
    applied_version: int


class HistoryEntry(BaseModel):
    """One stored version, without its document (``GET /admin/config/history/{version}``)."""

    version: int
    created_at: datetime
    author: str
    action: str
    target: str
    comment: str


class VersionPublic(HistoryEntry):
    """One stored version with the whole configuration it holds."""

    document: ConfigDocument


class RollbackRequest(_Doc):
    """``POST /admin/config/rollback``: make a new version equal to ``version``."""

    #: At most SQL's 32-bit INTEGER (a larger version cannot exist).
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]
    comment: Annotated[str, Field(max_length=1000)] = ""


def to_snapshot(version: int, document: ConfigDocument) -> ConfigSnapshot:
    """The data plane's view of one stored version."""
    return ConfigSnapshot(
        version=version,
        services=MappingProxyType({n: s.to_policy() for n, s in document.services.items()}),
        routes=tuple(r.to_route(r.route_id) for r in document.routes),
        throttle_default=document.throttle.to_policy(),
    )
