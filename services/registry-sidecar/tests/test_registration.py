"""Unit tests of the registration decisions and of the token cache."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.auth import Principal
from aimp_core.errors import Forbidden, Unauthorized
from aimp_registry_sidecar.callers import CallerCheck, TokenCache
from aimp_registry_sidecar.registration import backoff_s, desired_status


def test_desired_status() -> None:
    """STARTING until first ready, UP while ready, DOWN once it stops being ready."""
    assert desired_status(ready=False, ever_ready=False) == "STARTING"
    assert desired_status(ready=True, ever_ready=True) == "UP"
    assert desired_status(ready=False, ever_ready=True) == "DOWN"


@given(failures=st.integers(0, 200), max_s=st.floats(1, 120))
def test_backoff_grows_to_a_ceiling(failures: int, max_s: float) -> None:
    """Backoff is 0 with no failure, never above the ceiling, and never shrinks as failures grow."""
    delay = backoff_s(failures, max_s=max_s)
    assert 0 <= delay <= max_s
    assert (delay == 0) == (failures == 0)
    assert backoff_s(failures + 1, max_s=max_s) >= delay


def test_backoff_doubles() -> None:
    """1 s, 2 s, 4 s... until the ceiling."""
    assert [backoff_s(n, max_s=10) for n in range(1, 6)] == [1, 2, 4, 8, 10]


def _principal(roles: set[str], expires_at: float) -> Principal:
    return Principal("sub", "client", frozenset(roles), "jti", expires_at)


def test_token_cache_forgets_expired_and_evicts_oldest() -> None:
    """Entries vanish at expiry and the oldest goes first when the cache is full."""
    now = [1000.0]
    cache = TokenCache(2, clock=lambda: now[0])
    cache.put("t1", _principal({"invoker"}, 1010))
    cache.put("t2", _principal({"invoker"}, 2000))
    assert cache.get("t1") is not None
    now[0] = 1010.0
    assert cache.get("t1") is None
    cache.put("t3", _principal({"invoker"}, 2000))
    cache.put("t4", _principal({"invoker"}, 2000))
    assert len(cache) == 2
    assert cache.get("t2") is None and cache.get("t4") is not None
    cache.put("t5", _principal({"invoker"}, 900))  # already expired: not kept
    assert cache.get("t5") is None


class CountingVerifier:
    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.calls = 0

    async def verify(self, authorization: str | None) -> Principal:
        self.calls += 1
        return self.principal


async def test_caller_check_verifies_once_per_token() -> None:
    """A token is verified on first use only; roles are checked on every call."""
    verifier = CountingVerifier(_principal({"invoke:iris"}, 4_000_000_000))
    check = CallerCheck(verifier, "iris", TokenCache(10), enabled=True)
    for _ in range(3):
        await check.check("Bearer tok")
    assert verifier.calls == 1
    other = CallerCheck(verifier, "other", TokenCache(10), enabled=True)
    with pytest.raises(Forbidden):
        await other.check("Bearer tok")
    with pytest.raises(Unauthorized):
        await check.check(None)


async def test_caller_check_switched_off_lets_everyone_in() -> None:
    """With verification off no header is needed."""
    check = CallerCheck(None, "iris", TokenCache(10), enabled=False)
    assert await check.check(None) is None
