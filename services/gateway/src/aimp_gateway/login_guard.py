"""Sign-in failures in Redis, shared by every gateway; the decisions are :mod:`lockout`'s.

Per name: a sorted set of failure times (``aimp:auth:lockout:<kind>:<hash>``)
and a lock key that expires with the lock. Names are hashed, so a username
never appears in a Redis key. Synchronous: it runs in the token endpoint's
worker threads. When Redis is unreachable sign-ins are not slowed (logged):
the Argon2 check still guards them, and the admin can still sign in.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable

import redis

from aimp_core.ratelimit.engine import REDIS_ERRORS
from aimp_gateway.lockout import Attempts, Decision, LockoutPolicy, Verdict, after_failure, decide

log = logging.getLogger(__name__)

PREFIX = "aimp:auth:lockout"


def _keys(kind: str, name: str) -> tuple[str, str]:
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"{PREFIX}:{kind}:{digest}", f"{PREFIX}:{kind}:{digest}:locked"


def _float(raw: object) -> float | None:
    if raw is None:
        return None
    return float(raw.decode() if isinstance(raw, bytes) else str(raw))


class LoginGuard:
    """Counts failed sign-ins of usernames (``user``) and client ids (``client``)."""

    def __init__(
        self,
        client: redis.Redis,
        policy: LockoutPolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.policy = policy
        self.clock = clock

    def check(self, kind: str, name: str) -> Decision:
        """May ``name`` try now? (Allowed when Redis cannot tell.)"""
        now = self.clock()
        failures_key, lock_key = _keys(kind, name)
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrangebyscore(failures_key, now - self.policy.window_s, "+inf", withscores=True)
            pipe.get(lock_key)
            entries, locked = pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("sign-in lockout unavailable (Redis): %s", type(exc).__name__)
            return Decision(Verdict.ALLOW)
        attempts = Attempts(tuple(float(score) for _, score in entries), _float(locked))
        return decide(attempts, now, self.policy)

    def failed(self, kind: str, name: str) -> None:
        """Record a failure; lock the name when it is one too many."""
        now = self.clock()
        failures_key, lock_key = _keys(kind, name)
        member = uuid.uuid4().hex
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zadd(failures_key, {member: now})
            pipe.zremrangebyscore(failures_key, "-inf", now - self.policy.window_s)
            pipe.zrange(failures_key, 0, -1, withscores=True)
            pipe.expire(failures_key, int(self.policy.window_s) + 1)
            pipe.get(lock_key)
            _, _, entries, _, locked = pipe.execute()
            others = tuple(
                float(score)
                for m, score in entries
                if (m.decode() if isinstance(m, bytes) else m) != member
            )
            after = after_failure(Attempts(others, _float(locked)), now, self.policy)
            if after.locked_until is not None and after.locked_until > now:
                pipe = self.redis.pipeline(transaction=True)
                lock_ms = max(1, int((after.locked_until - now) * 1000))
                pipe.set(lock_key, str(after.locked_until), px=lock_ms)
                pipe.delete(failures_key)
                pipe.execute()
                log.warning("sign-in locked after repeated failures", extra={"kind": kind})
        except REDIS_ERRORS as exc:
            log.warning("cannot record a failed sign-in (Redis): %s", type(exc).__name__)

    def succeeded(self, kind: str, name: str) -> None:
        """A correct secret clears the name's failures."""
        try:
            self.redis.delete(*_keys(kind, name))
        except REDIS_ERRORS as exc:
            log.warning("cannot clear sign-in failures (Redis): %s", type(exc).__name__)
