"""The limiter adapter: one script call per loop turn, and a local limiter when Redis is gone.

:meth:`Limiter.check` decides a call with one ``EVALSHA`` of
:data:`aimp_core.ratelimit.lua.CHECK` over every applicable limit. Checks are
micro-batched: all those issued in the same event-loop turn go to Redis as one
``EVALSHA`` of :data:`~aimp_core.ratelimit.lua.CHECK_MANY` (each call still gets its
own exact verdict, decided as if alone), so a busy gateway pays one command's
client-side work and one round trip per turn instead of per call. Redis
unreachable or slow never hangs a call: the client's socket timeout bounds the
wait, the limiter marks Redis down, and from then on calls are decided at once
without Redis: refused when a limit fails closed, else by a local limiter that
gives this process its share (rate and burst divided by the live members last
counted in Redis). A background task probes Redis every ``probe_interval_s`` and
switches back by itself; while Redis is up it records this process's heartbeat
(so every member knows how many share the limits) and renews the leases of
calls still in flight, so a lease outlives a long call but not a crashed process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from aimp_core.ratelimit import lua
from aimp_core.ratelimit.algorithm import LimitState, Numbers, decide, release
from aimp_core.ratelimit.headers import policy_header
from aimp_core.ratelimit.limits import Kind, LimitSpec
from aimp_core.ratelimit.loops import Loop
from aimp_core.ratelimit.policies import KEY_PREFIX, Applied

log = logging.getLogger(__name__)

#: Sorted set of live enforcing processes (score: last heartbeat, ms).
MEMBERS_KEY = KEY_PREFIX + "members"
#: Local fail-open state is dropped beyond this many keys (memory bound in long outages).
MAX_LOCAL_KEYS = 100_000
_EMPTY = LimitState()
Mode = Literal["redis", "local", "closed"]
#: One queued check: its CHECK keys and arguments, and where its reply goes.
_Pending = tuple[tuple[bytes, ...], list[bytes | str | int], asyncio.Future[Any]]
#: Checks per script call at most: Redis runs a script alone, so a very large batch would
#: hold up every other client (~10-20 us of Redis time per check); more go in several calls.
MAX_BATCH = 64
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True)
class Compiled:
    """The parts of a check that depend only on (client, service) and the rules."""

    applied: tuple[Applied, ...]
    keys: tuple[str, ...]
    tail: tuple[int, ...]
    lease_keys: tuple[str, ...]
    named: tuple[tuple[str, LimitSpec], ...]
    policy_header: str
    fail_open: bool
    #: ``keys`` and the applied count plus ``tail`` as the bytes Redis receives, encoded
    #: once here instead of by the client on every call.
    wire_keys: tuple[bytes, ...] = ()
    wire_tail: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, applied: Sequence[Applied], now_us: int) -> Compiled:
        keys: list[str] = []
        tail: list[int] = []
        for a in applied:
            keys.append(a.state_key)
            if a.lease_key is not None:
                keys.append(a.lease_key)
            tail.extend(a.spec.argv())
        named = tuple((a.name, a.spec) for a in applied)
        return cls(
            applied=tuple(applied),
            keys=tuple(keys),
            tail=tuple(tail),
            lease_keys=tuple(a.lease_key for a in applied if a.lease_key is not None),
            named=named,
            policy_header=policy_header(named, now_us),
            fail_open=all(a.fail_open for a in applied),
            wire_keys=tuple(k.encode() for k in keys),
            wire_tail=tuple(b"%d" % v for v in (len(applied), *tail)),
        )


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    #: redis: decided exactly; local: Redis down, this process's share; closed: Redis down
    #: and a limit fails closed.
    mode: Mode
    compiled: Compiled
    #: Index into ``compiled.applied`` of the limit that refused; -1 if admitted.
    failed: int
    kind: Kind | None
    retry_after_us: int
    now_us: int
    numbers: tuple[Numbers, ...]
    #: Held leases to give back when the call ends ("" when none).
    lease_id: str = ""

    @property
    def refused_by(self) -> Applied | None:
        return self.compiled.applied[self.failed] if self.failed >= 0 else None


def _numbers(raw: Sequence[int], count: int) -> tuple[Numbers, ...]:
    """The per-limit numbers of a CHECK reply (Redis integer replies are ints already)."""
    return tuple(Numbers(*raw[5 + 5 * i : 10 + 5 * i]) for i in range(count))


def _now_us() -> int:
    return time.time_ns() // 1000


class Limiter:
    """Exact limits in Redis, with a bounded, self-healing fallback when Redis is away."""

    def __init__(
        self,
        redis: Redis,
        *,
        member_id: str | None = None,
        lease_ttl_s: float = 10.0,
        probe_interval_s: float = 0.25,
        heartbeat_s: float = 1.0,
        member_ttl_s: float = 3.0,
        member: bool = True,
    ) -> None:
        self.redis = redis
        self.member_id = member_id or uuid.uuid4().hex[:12]
        #: Whether this process counts among the members that share each limit when Redis
        #: is away (gateways do; a throttle service answering a few checks does not).
        self.member = member
        self.lease_ttl_us = int(lease_ttl_s * 1_000_000)
        self._lease_ttl_arg = b"%d" % self.lease_ttl_us
        self.probe_interval_s = probe_interval_s
        self.heartbeat_s = heartbeat_s
        self.member_ttl_ms = int(member_ttl_s * 1000)
        self._check = redis.register_script(lua.CHECK)
        self._check_many = redis.register_script(lua.CHECK_MANY)
        #: Checks issued this event-loop turn, sent together at its end.
        self._pending: list[_Pending] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._renew = redis.register_script(lua.RENEW)
        self._heartbeat = redis.register_script(lua.HEARTBEAT)
        self._usage = redis.register_script(lua.USAGE)
        self._ids = itertools.count()
        #: lease id -> lease keys, of calls in flight (renewed until released).
        self._held: dict[str, tuple[str, ...]] = {}
        self._local: dict[str, LimitState] = {}
        self._wake = asyncio.Event()
        self._loop = Loop("ratelimit-upkeep", self._tick)
        self._last_renew = time.monotonic()
        #: Live members sharing the limits, as last counted in Redis (1 until then).
        self.members = 1
        self._counts: list[tuple[float, int]] = []
        self.available = True

    # -- decisions ------------------------------------------------------------------------

    async def check(self, compiled: Compiled, *, renew: bool = True) -> Verdict:
        """Decide one call; never waits on Redis longer than the client's socket timeout.

        ``renew``: keep the call's leases alive until :meth:`release` (a call this process
        forwards); False leaves them to expire after the lease time unless released with
        :meth:`release_lease` (a lease handed to another process).
        """
        if not self.available:
            return self._local_check(compiled)
        lease_id = f"{self.member_id}:{next(self._ids)}" if compiled.lease_keys else ""
        args: list[bytes | str | int] = [b"0", lease_id, self._lease_ttl_arg]
        args += compiled.wire_tail
        try:
            raw = await self._submit(compiled.wire_keys, args)
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            return self._local_check(compiled)
        allowed = bool(raw[0])
        if allowed and lease_id and renew:
            self._held[lease_id] = compiled.lease_keys
        return Verdict(
            allowed=allowed,
            mode="redis",
            compiled=compiled,
            failed=int(raw[1]) - 1,
            kind=Kind(int(raw[2])) if raw[2] else None,
            retry_after_us=int(raw[3]),
            now_us=int(raw[4]),
            numbers=_numbers(raw, len(compiled.applied)),
            lease_id=lease_id if allowed else "",
        )

    def _submit(
        self, keys: tuple[bytes, ...], args: list[bytes | str | int]
    ) -> asyncio.Future[Any]:
        """Queue one CHECK for the end of this loop turn; the future gets its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Send the checks queued this turn as one script call (a task of its own, so a
        caller that is cancelled while waiting takes nobody else's answer with it)."""
        pending, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        for first in range(0, len(pending), MAX_BATCH):
            task = loop.create_task(self._send(pending[first : first + MAX_BATCH]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                keys, args, _ = batch[0]
                replies = [await self._check(keys=keys, args=args)]
            else:
                all_keys: list[bytes] = []
                all_args: list[bytes | str | int] = [len(batch)]
                for keys, args, _ in batch:
                    all_args += (len(keys), len(args))
                for keys, args, _ in batch:
                    all_keys += keys
                    all_args += args
                replies = await self._check_many(keys=all_keys, args=all_args)
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # every caller learns it (Redis errors: local decisions)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if not future.done():  # its caller was cancelled meanwhile; its lease expires
                future.set_result(reply)

    def _local_check(self, compiled: Compiled) -> Verdict:
        now = _now_us()
        if not compiled.fail_open:
            closed = next(i for i, a in enumerate(compiled.applied) if not a.fail_open)
            return Verdict(False, "closed", compiled, closed, None, 1_000_000, now, ())
        specs = [a.spec.scaled(self.members) for a in compiled.applied]
        states = [self._local.get(a.state_key, _EMPTY) for a in compiled.applied]
        lease_id = f"{self.member_id}:local:{next(self._ids)}" if compiled.lease_keys else ""
        d = decide(specs, states, now, lease_id=lease_id, lease_ttl_us=self.lease_ttl_us)
        if d.allowed:
            if len(self._local) > MAX_LOCAL_KEYS:
                self._local.clear()
            for a, st in zip(compiled.applied, d.states, strict=True):
                self._local[a.state_key] = st
        return Verdict(
            d.allowed, "local", compiled, d.failed, d.kind, d.retry_after_us, now, d.numbers,
            lease_id if d.allowed else "",
        )  # fmt: skip

    async def release(self, verdict: Verdict) -> None:
        """Give back the call's concurrency leases (idempotent; expiry covers any failure)."""
        lease_id = verdict.lease_id
        if not lease_id:
            return
        if verdict.mode == "local":
            for a in verdict.compiled.applied:
                st = self._local.get(a.state_key)
                if st is not None and a.lease_key is not None:
                    self._local[a.state_key] = release(st, lease_id)
            return
        keys = self._held.pop(lease_id, None)
        if keys is None or not self.available:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zrem(key, lease_id)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._went_down(exc)

    async def release_lease(self, compiled: Compiled, lease_id: str) -> bool:
        """Give back a lease handed out with ``renew=False``; True if it was still held."""
        self._held.pop(lease_id, None)
        if not compiled.lease_keys:
            return False
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in compiled.lease_keys:
                pipe.zrem(key, lease_id)
            removed = await pipe.execute()
        return any(int(n) for n in removed)

    async def usage(self, compiled: Compiled) -> list[int]:
        """Read-only: [now_us] + per limit [rate_remaining, day_used, month_used, in_flight]."""
        args: list[str | int] = [0, "", 0, len(compiled.applied), *compiled.tail]
        return [int(v) for v in await self._usage(keys=compiled.keys, args=args)]

    # -- outage handling and upkeep ---------------------------------------------------------

    def _went_down(self, exc: BaseException) -> None:
        if self.available:
            self.available = False
            log.warning(
                "redis unreachable: limits decided locally (fail open, 1/%d of each) or "
                "refused (fail closed) until it answers: %s",
                self.members,
                f"{type(exc).__name__}: {exc}"[:200],
            )
            self._wake.set()

    async def _probe(self) -> None:
        # Pooled connections opened before the outage are dead even once Redis is back
        # (a restart closed them); each would fail one call and flip us back to local.
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.connection_pool.disconnect()
        try:
            await self.redis.ping()
            await self._beat()
        except REDIS_ERRORS:
            return
        self.available = True
        self._local.clear()
        log.info("redis answers again; limits are exact again", extra={"members": self.members})

    async def _beat(self) -> None:
        count = await self._heartbeat(
            keys=[MEMBERS_KEY], args=[self.member_id, self.member_ttl_ms, int(self.member)]
        )
        # A restarted Redis has forgotten the other members until their next heartbeats:
        # the share stays at the largest count of the last member_ttl.
        now = time.monotonic()
        self._counts = [(t, c) for t, c in self._counts if now - t < self.member_ttl_ms / 1000]
        self._counts.append((now, max(1, int(count))))
        self.members = max(c for _, c in self._counts)

    async def _renew_leases(self) -> None:
        if not self._held:
            return
        pairs = [(k, lease) for lease, keys in list(self._held.items()) for k in keys]
        await self._renew(
            keys=[k for k, _ in pairs], args=[self.lease_ttl_us, *(lease for _, lease in pairs)]
        )

    async def _tick(self) -> None:
        """One round of upkeep: probe while Redis is away, else heartbeat and renew leases."""
        if not self.available:
            await self._probe()
            await self._loop.sleep(self.probe_interval_s)
            return
        try:
            await self._beat()
            if time.monotonic() - self._last_renew >= self.lease_ttl_us / 3_000_000:
                await self._renew_leases()
                self._last_renew = time.monotonic()
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.heartbeat_s):
                await self._wake.wait()

    async def start(self) -> None:
        """Count the members once (so a first outage divides correctly), then keep upkeep."""
        try:
            await self._beat()
        except REDIS_ERRORS as exc:
            self._went_down(exc)
        self._loop.start()

    async def stop(self) -> None:
        self._wake.set()
        await self._loop.stop()
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.zrem(MEMBERS_KEY, self.member_id)
