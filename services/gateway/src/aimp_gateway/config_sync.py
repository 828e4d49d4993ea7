"""Every running gateway applies a configuration change within a second.

SQL holds the versions (:mod:`aimp_gateway.config_store`); Redis only says
that a new one exists. A writer commits, applies the new version in its own
gateway at once, then sets ``VERSION_KEY`` to ``<version>:<nonce>`` and
publishes it on ``CHANNEL`` (one transaction). Each gateway's
:class:`ConfigFollower` waits on the channel and, message or not, reads the key
every ``poll_s``; an announcement it has not seen (the nonce tells a new one
from a number left by an earlier database) naming a newer version makes it
load the newest version from SQL (in a worker thread) and
swap ``live.snapshot`` whole. So a lost message delays a change by at most
``poll_s``. Redis channels ignore database numbers, so a message may come
from another deployment sharing the server: the key, not the message, decides.

Safety nets: while Redis is unreachable the follower keeps its snapshot and
checks SQL's newest version every ``poll_s`` instead; and every ``sql_poll_s``
it checks SQL anyway, for a change whose announcement was lost (Redis down at
the writer). Versions only move forward: a slower, older load never replaces a
newer snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from sqlalchemy.exc import SQLAlchemyError

from aimp_core.ratelimit.engine import REDIS_ERRORS
from aimp_core.ratelimit.loops import Loop, follow_channel
from aimp_gateway.config_schemas import ConfigDocument, to_snapshot
from aimp_gateway.config_store import Change, ConfigStore, StoredVersion
from aimp_gateway.policy import ConfigSnapshot, LiveConfig

log = logging.getLogger(__name__)

VERSION_KEY = "aimp:gateway:config:version"
CHANNEL = "aimp:gateway:config:changed"


def snapshot_of(stored: StoredVersion) -> ConfigSnapshot:
    """The data plane's view of a stored version (validated again: the schema may be newer)."""
    return to_snapshot(stored.version, ConfigDocument.model_validate(stored.document))


def load_snapshot(store: ConfigStore) -> ConfigSnapshot:
    """The newest stored version as a snapshot (blocking: start-up, or a worker thread)."""
    return snapshot_of(store.latest())


async def announce(redis: Redis, version: int) -> None:
    """Tell every gateway that ``version`` is stored.

    The key holds ``<version>:<nonce>``, fresh for each announcement, so that a number
    left in Redis by an earlier database (reset, restored, or another cluster on the
    same Redis) is never mistaken for this announcement of the same number.
    """
    token = f"{version}:{secrets.token_hex(8)}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(VERSION_KEY, token)
        pipe.publish(CHANNEL, token)
        await pipe.execute()


async def announced(redis: Redis) -> tuple[str, int] | None:
    """The last announcement: (its token, the version it names), or None."""
    raw = await redis.get(VERSION_KEY)
    if raw is None:
        return None
    token = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        return token, int(token.split(":", 1)[0])
    except ValueError:
        return None


class ConfigFollower:
    """Keeps ``live.snapshot`` equal to the newest stored version."""

    def __init__(
        self,
        redis: Redis,
        store: ConfigStore,
        live: LiveConfig,
        *,
        poll_s: float = 0.5,
        sql_poll_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.store = store
        self.live = live
        self.poll_s = poll_s
        self.sql_poll_s = sql_poll_s
        self._clock = clock
        self._next_sql_check = 0.0
        self._redis_down = False
        self._announced: str | None = None
        #: A stored version that failed to load: not retried until a newer one comes.
        self._broken = 0
        self._loop = Loop("gateway-config", self._follow)
        #: Called with each snapshot swapped in (on the event loop; keep them quick).
        self.listeners: list[Callable[[ConfigSnapshot], None]] = []

    def apply(self, snapshot: ConfigSnapshot) -> bool:
        """Swap in ``snapshot`` if it is newer than the one in force; True when swapped."""
        current = self.live.snapshot.version
        if snapshot.version <= current:
            return False
        self.live.snapshot = snapshot
        for listener in self.listeners:
            listener(snapshot)
        log.info(
            "gateway configuration applied", extra={"version": snapshot.version, "was": current}
        )
        return True

    async def load_newer(self, version: int) -> bool:
        """Load SQL's newest version if ``version`` (a number seen somewhere) is newer than ours."""
        if version <= self.live.snapshot.version or version <= self._broken:
            return False
        try:
            stored = await asyncio.to_thread(self.store.latest)
        except SQLAlchemyError as exc:
            log.warning(
                "could not read the configuration from SQL; keeping version %s: %s",
                self.live.snapshot.version,
                exc,
            )
            return False
        try:
            snapshot = snapshot_of(stored)
        except ValidationError as exc:
            self._broken = stored.version
            log.error(
                "stored configuration version %s is invalid; keeping version %s: %s",
                stored.version,
                self.live.snapshot.version,
                exc,
            )
            return False
        return self.apply(snapshot)

    async def check_sql(self) -> bool:
        """Compare with SQL's newest version directly (no Redis involved)."""
        self._next_sql_check = self._clock() + self.sql_poll_s
        try:
            head = await asyncio.to_thread(self.store.head)
        except SQLAlchemyError as exc:
            log.warning("could not read the configuration version from SQL: %s", exc)
            return False
        return await self.load_newer(head)

    async def refresh(self) -> bool:
        """One check: the announced version (Redis), and SQL itself when its turn has come."""
        last = await announced(self.redis)
        changed = False
        # Act on an announcement once: one that loads nothing newer (a lower number left
        # by a slower writer) is not looked up again on every poll.
        if last is not None and last[0] != self._announced:
            self._announced = last[0]
            changed = await self.load_newer(last[1])
        if not changed and self._clock() >= self._next_sql_check:
            changed = await self.check_sql()
        return changed

    async def _follow(self) -> None:
        """Subscribe, then check on every message and every ``poll_s``."""

        async def refresh() -> None:
            await self.refresh()
            if self._redis_down:
                self._redis_down = False
                log.info("Redis is back; following configuration changes through it again")

        try:
            await follow_channel(
                self.redis, CHANNEL, refresh, poll_s=self.poll_s, stopping=self._loop.stopping
            )
        except REDIS_ERRORS as exc:
            if not self._redis_down:
                self._redis_down = True
                log.warning(
                    "Redis unreachable (%s); keeping configuration version %s and "
                    "checking SQL for changes until it returns",
                    type(exc).__name__,
                    self.live.snapshot.version,
                )
            await self.check_sql()
            await self._loop.sleep(self.poll_s)

    async def start(self) -> None:
        """Catch up with SQL once, then follow changes in the background."""
        await self.check_sql()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()


class ConfigCenter:
    """The write side: store a change, apply it in this gateway at once, announce it."""

    def __init__(self, store: ConfigStore, redis: Redis, follower: ConfigFollower) -> None:
        self.store = store
        self.redis = redis
        self.follower = follower

    @property
    def applied_version(self) -> int:
        return self.follower.live.snapshot.version

    async def change(
        self, change: Change, mutate: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> tuple[StoredVersion, StoredVersion]:
        """Store ``mutate(newest document)`` as a new version; returns (before, after).

        ``mutate`` runs in a worker thread and may raise to refuse the change.
        """
        before, after = await asyncio.to_thread(self.store.change, change, mutate)
        if after.version != before.version:
            self.follower.apply(snapshot_of(after))
            try:
                await announce(self.redis, after.version)
            except REDIS_ERRORS as exc:
                # Stored and applied here; other gateways find it through their SQL check.
                log.warning(
                    "configuration version %s stored but not announced (Redis: %s); "
                    "other gateways apply it within their SQL check interval",
                    after.version,
                    type(exc).__name__,
                )
        return before, after
