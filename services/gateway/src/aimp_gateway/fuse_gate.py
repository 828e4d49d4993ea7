"""The data plane's use of the fuses: admission, refusals, fallbacks and outcome recording.

Pure decisions stay in :mod:`aimp_gateway.breaker`, :mod:`aimp_gateway.bulkhead`
and :mod:`aimp_gateway.retry_budget`; this module turns them into what a call
sees (a 503 with Retry-After naming the reason, or the service's fallback answer)
and settles each attempt's breaker permits exactly once.

What counts as a failure for the breakers: a refused or timed-out connection, a
connection broken before the whole answer, no answer within the call's timeout,
and any 5xx answer except 503. A 503 is how a live sidecar sheds load (queue
full) or drains, the same reason the outlier detector ignores it: counting it
would open the breaker on a busy but healthy service and turn a partial overload
into a full outage. It counts neither way (the permit is given back). Slow calls
count by their time to the answer's head (a streamed body may rightly run long).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aimp_core.errors import AimpError, ServiceUnavailable
from aimp_gateway.breaker import BreakerState, CircuitBreaker, Permit
from aimp_gateway.bulkhead import Bulkhead
from aimp_gateway.fuses import FALLBACKS, REFUSALS, ServiceFuses
from aimp_gateway.policy import FallbackPolicy
from aimp_gateway.routing import Candidates
from aimp_gateway.upstream import UpstreamResponse, UpstreamStream

#: The header that marks a configured fallback answer (never the service's own).
FALLBACK_HEADER = b"x-aimp-fallback"
#: Retry-After of a call refused because the bulkhead is full: places free up as calls end.
BULKHEAD_RETRY_AFTER_S = 1.0


class Refusal(Exception):
    """The fuses refused the call before any instance was called.

    ``reason``: ``breaker_open``, ``instance_breakers_open``, ``bulkhead_full`` or
    ``no_instance``; ``error``: the 503 to answer when the service has no fallback.
    """

    def __init__(self, reason: str, error: AimpError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


def usable(service: str, candidates: Candidates, fuses: ServiceFuses) -> Candidates:
    """``candidates`` less the instances whose own breaker refuses calls now.

    Raises :class:`Refusal` (``instance_breakers_open``) when that leaves none.
    """
    breakers = fuses.instances
    if breakers is None or not candidates.instances:
        return candidates
    kept = breakers.usable(candidates.instances)
    if len(kept) == len(candidates.instances):
        return candidates
    if kept:
        return Candidates(candidates.revision, kept)
    wait = breakers.retry_after_s(candidates.instances)
    REFUSALS.labels(service, "instance_breakers_open").inc()
    raise Refusal(
        "instance_breakers_open",
        ServiceUnavailable(
            f"every routable instance of '{service}' has its circuit breaker open after "
            f"failed or slow calls; the first lets trial calls through in {wait:.1f} s, "
            "retry after the Retry-After delay",
            retry_after_s=wait,
        ),
    )


def enter(service: str, fuses: ServiceFuses) -> tuple[Bulkhead | None, Permit | None]:
    """Pass the service breaker, then take a bulkhead place: (place taken, permit).

    Raises :class:`Refusal` (``breaker_open`` or ``bulkhead_full``) having taken nothing.
    """
    breaker = fuses.breaker
    permit = None
    if breaker is not None:
        permit = breaker.acquire()
        if permit is None:
            REFUSALS.labels(service, "breaker_open").inc()
            raise Refusal("breaker_open", breaker_error(service, breaker))
    bulkhead = fuses.bulkhead
    if bulkhead is not None and not bulkhead.try_enter():
        if breaker is not None and permit is not None:
            breaker.release(permit)
        REFUSALS.labels(service, "bulkhead_full").inc()
        raise Refusal(
            "bulkhead_full",
            ServiceUnavailable(
                f"'{service}' already has {bulkhead.max_concurrent} calls in flight from this "
                "gateway, its bulkhead limit (max_concurrent); retry after the Retry-After "
                "delay, or raise the limit in the service's policy",
                retry_after_s=BULKHEAD_RETRY_AFTER_S,
            ),
        )
    return bulkhead, permit


def breaker_error(service: str, breaker: CircuitBreaker) -> ServiceUnavailable:
    """The 503 for a call the service breaker refused: why, and when to come back."""
    if breaker.state is BreakerState.OPEN:
        wait = breaker.retry_after_s()
        return ServiceUnavailable(
            f"'{service}' is failing: its circuit breaker opened after too many failed or "
            f"slow calls and refuses calls for {wait:.1f} s more; retry after the "
            "Retry-After delay",
            retry_after_s=wait,
        )
    return ServiceUnavailable(
        f"'{service}' is recovering: its circuit breaker lets "
        f"{breaker.policy.half_open_calls} trial calls through and they are still under way; "
        "retry after the Retry-After delay",
        retry_after_s=1.0,
    )


def fallback_answer(service: str, fallback: FallbackPolicy, reason: str) -> UpstreamResponse:
    """The configured fallback, marked with ``x-aimp-fallback: true``."""
    FALLBACKS.labels(service, reason).inc()
    headers = (
        (b"content-type", fallback.content_type.encode("latin-1", "replace")),
        (FALLBACK_HEADER, b"true"),
    )
    return UpstreamResponse(fallback.status, headers, fallback.body, 0.0)


class AttemptPermits:
    """The breaker permits one attempt holds (service and instance), settled exactly once."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: list[tuple[CircuitBreaker, Permit]] = []

    def add(self, breaker: CircuitBreaker, permit: Permit) -> None:
        self._held.append((breaker, permit))

    def answered(self, status: int, duration_s: float) -> None:
        """The instance answered: 5xx but 503 is a failure, 503 counts neither way."""
        if status == 503:
            self.release()
        else:
            self.ended(failed=status >= 500, duration_s=duration_s)

    def ended(self, *, failed: bool, duration_s: float) -> None:
        held, self._held = self._held, []
        for breaker, permit in held:
            breaker.record(permit, failed=failed, duration_s=duration_s)

    def release(self) -> None:
        """No outcome (never sent, cancelled, or a 503): give the places back."""
        held, self._held = self._held, []
        for breaker, permit in held:
            breaker.release(permit)


class GatedStream(UpstreamStream):
    """A streamed answer that frees its bulkhead place when closed (once).

    The call is in flight until its last byte, so its place is held that long;
    the data plane closes every stream it is given.
    """

    __slots__ = ("_inner", "_on_close")

    def __init__(self, inner: UpstreamStream, on_close: Callable[[], None]) -> None:
        # Delegates to ``inner``; the parent's state is never used.
        self._inner = inner
        self._on_close: Callable[[], None] | None = on_close
        self.idle_timeout_s = inner.idle_timeout_s

    def chunks(self) -> AsyncIterator[bytes]:
        return self._inner.chunks()

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()
