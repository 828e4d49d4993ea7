"""What the live configuration says about one service or one route: plain frozen values.

This module is the contract between the config center (which stores, validates
and versions these settings and publishes them as a :class:`ConfigSnapshot`)
and the data plane (which reads them on every call). It does no I/O and holds
no state. Defaults here are what a service gets when nobody configured it;
each says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

#: The request header that pins a call to one revision (e.g. to test a canary by hand).
DEFAULT_PIN_HEADER = "x-aimp-revision"


class LbAlgorithm(StrEnum):
    """How the gateway spreads a service's calls over its routable instances."""

    ROUND_ROBIN = "round_robin"
    #: Smooth weighted round robin on the instances' ``aimp.weight`` metadata.
    WEIGHTED = "weighted"
    #: Power of two random choices, the one with fewer calls in flight times its latency
    #: EWMA wins: adapts to slow pods without herding (the default).
    LEAST_OUTSTANDING = "least_outstanding"


@dataclass(frozen=True)
class BreakerPolicy:
    """A circuit breaker with Resilience4j's semantics.

    The breaker looks at the last ``window_size`` calls (``window="count"``) or the
    calls of the last ``window_size`` seconds (``window="time"``). Once at least
    ``minimum_calls`` are in the window, it opens when the failure rate or the
    slow-call rate (calls longer than ``slow_call_s``) reaches its threshold. Open,
    it refuses every call for ``open_wait_s``, then lets ``half_open_calls`` trial
    calls through; their rates decide between closing and opening again.
    """

    window: Literal["count", "time"] = "count"
    #: 20 calls: trips within a second at modest traffic, yet one bad call is only 5 %.
    window_size: int = 20
    #: Never judge on fewer than 10 calls (a cold service's first error is not 100 %).
    minimum_calls: int = 10
    #: Percent of failed calls that opens the breaker (Resilience4j's default, 50).
    failure_rate_percent: float = 50.0
    #: Percent of slow calls that opens the breaker; 100 = only when every call is slow.
    slow_call_rate_percent: float = 100.0
    #: A call slower than this counts as slow (inference above 10 s is a stuck pod).
    slow_call_s: float = 10.0
    #: How long an open breaker refuses calls before trying again (and the Retry-After).
    open_wait_s: float = 10.0
    #: Trial calls in half-open; all must have an outcome before it decides.
    half_open_calls: int = 5


@dataclass(frozen=True)
class RetryPolicy:
    """Second tries: only for calls never sent (connect failures) or idempotent methods."""

    #: Tries in all, the first included (2 = one retry, on another instance).
    attempts: int = 2
    #: Retries may add at most this percent to the calls sent (Finagle-style budget),
    #: so retries cannot multiply load on a failing service.
    budget_percent: float = 20.0
    #: ...but at least this many retries per second are always allowed (low traffic).
    min_retries_per_s: float = 5.0


@dataclass(frozen=True)
class FallbackPolicy:
    """A fixed answer given instead of an error when the service cannot be reached.

    Used when the breaker is open, the bulkhead is full or no instance is UP; a
    fallback answer carries ``x-aimp-fallback: true`` and counts as such in stats.
    """

    status: int = 200
    content_type: str = "application/json"
    body: bytes = b""


@dataclass(frozen=True)
class RevisionWeight:
    """A share of a service's traffic for one revision (instances with ``aimp.revision``)."""

    revision: str
    #: Relative weight; percentages when the weights add up to 100.
    weight: int


@dataclass(frozen=True)
class ServicePolicy:
    """Everything the data plane needs to know about calling one service."""

    lb: LbAlgorithm = LbAlgorithm.LEAST_OUTSTANDING
    #: Prefer instances whose ``aimp.zone`` equals the gateway's zone while any is routable.
    zone_aware: bool = True
    #: Traffic split between revisions; empty = every UP instance, whatever its revision.
    revisions: tuple[RevisionWeight, ...] = ()
    pin_header: str = DEFAULT_PIN_HEADER
    #: One breaker for the whole service (None = no service breaker).
    breaker: BreakerPolicy | None = field(default_factory=BreakerPolicy)
    #: One breaker per instance, so a single bad pod is cut off (None = none).
    instance_breaker: BreakerPolicy | None = None
    #: Most calls in flight to the service from this gateway (None = unbounded).
    max_concurrent: int | None = None
    #: Whole-call timeout; None = the gateway's ``upstream_total_timeout_s``.
    timeout_s: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    fallback: FallbackPolicy | None = None


@dataclass(frozen=True)
class HeaderMatch:
    """A request header a route requires: exact value, or any value when ``value`` is None."""

    name: str
    value: str | None = None


@dataclass(frozen=True)
class Route:
    """Calls matching the predicates go to ``service`` with the path rewritten.

    Predicates: ``path_prefix`` (always), ``hosts`` (any of, empty = any host),
    ``headers`` (all of) and ``methods`` (any of, empty = any). Among matching
    routes the longest prefix wins, then the lower ``priority`` number.
    The forwarded path is ``rewrite_prefix`` + the part after ``path_prefix``
    (``rewrite_prefix=None`` keeps the path as it came).
    """

    route_id: str
    path_prefix: str
    service: str
    hosts: tuple[str, ...] = ()
    headers: tuple[HeaderMatch, ...] = ()
    methods: tuple[str, ...] = ()
    rewrite_prefix: str | None = None
    priority: int = 100
    #: Overrides the service's timeout for calls through this route.
    timeout_s: float | None = None


DEFAULT_POLICY = ServicePolicy()


@dataclass(frozen=True)
class ThrottleDefault:
    """The config center's say on the default per-client limit (clients no throttle policy
    or plan covers); a field left None keeps the gateway's setting for it."""

    rate_per_s: float | None = None
    burst: int | None = None
    on_redis_down: Literal["open", "closed"] | None = None


NO_THROTTLE_OVERRIDE = ThrottleDefault()


@dataclass(frozen=True)
class ConfigSnapshot:
    """One version of the whole live configuration; swapped whole, never changed."""

    version: int = 0
    services: MappingProxyType[str, ServicePolicy] = field(
        default_factory=lambda: MappingProxyType({})
    )
    routes: tuple[Route, ...] = ()
    throttle_default: ThrottleDefault = NO_THROTTLE_OVERRIDE

    def policy(self, service: str) -> ServicePolicy:
        """The policy for ``service`` (lower case), or the defaults when none is set."""
        return self.services.get(service, DEFAULT_POLICY)


class LiveConfig:
    """Holds the configuration in force; the config center swaps :attr:`snapshot` whole.

    Readers take ``live.snapshot`` once per call and use that one version throughout,
    so a change never applies to half a call.
    """

    __slots__ = ("snapshot",)

    def __init__(self, snapshot: ConfigSnapshot | None = None) -> None:
        self.snapshot = snapshot or ConfigSnapshot()
