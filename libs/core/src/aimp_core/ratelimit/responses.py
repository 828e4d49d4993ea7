"""A decision as HTTP: the RateLimit headers, and the 429 or 503 of a refusal."""

from __future__ import annotations

from aimp_core.errors import AimpError, ServiceUnavailable, TooManyRequests
from aimp_core.ratelimit.engine import Verdict
from aimp_core.ratelimit.headers import closed_detail, ratelimit_header, refusal_detail
from aimp_core.ratelimit.limits import Kind


def verdict_headers(verdict: Verdict) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` (none when no rate or quota applies)."""
    compiled = verdict.compiled
    if not compiled.policy_header or not verdict.numbers:
        return {}
    return {
        "RateLimit-Policy": compiled.policy_header,
        "RateLimit": ratelimit_header(compiled.named, verdict.numbers, verdict.now_us),
    }


def refusal(verdict: Verdict, client_id: str) -> AimpError:
    """429 naming the limit that refused (with Retry-After and the RateLimit headers), or
    503 when Redis is unreachable and a limit fails closed."""
    applied = verdict.refused_by
    assert applied is not None and not verdict.allowed
    if verdict.mode == "closed":
        return ServiceUnavailable(closed_detail(applied), retry_after_s=1.0)
    in_flight = applied.spec.concurrency
    if verdict.kind is Kind.CONCURRENCY and verdict.numbers:
        in_flight -= verdict.numbers[verdict.failed].concurrency_remaining
    return TooManyRequests(
        refusal_detail(client_id, applied, verdict.kind, in_flight),
        retry_after_s=verdict.retry_after_us / 1_000_000,
        **verdict_headers(verdict),
    )
