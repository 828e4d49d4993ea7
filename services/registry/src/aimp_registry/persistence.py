"""Keeps the registry in SQL so that a restart brings every instance back at once.

:class:`StateDatabase` is the SQL adapter (blocking; called in a worker thread).
:class:`StateWriter` listens to the store: every change marks its instance dirty,
and a background task writes the dirty instances in one transaction a moment
later (``registry_persist_delay_s``), off the event loop, so the database is at
most about 100 ms behind memory and a burst of changes costs one commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Column, Engine, MetaData, String, Table, Text, delete, insert, select

from aimp_core.db import make_engine
from aimp_registry.interface import Change, RegistryStore
from aimp_registry.model import InstanceRecord
from aimp_registry.records import CorruptRecord, record_from_json, record_to_json

log = logging.getLogger(__name__)

_metadata = MetaData()
INSTANCES = Table(
    "registry_instances",
    _metadata,
    Column("app", String(255), primary_key=True),
    Column("instance_id", String(255), primary_key=True),
    Column("body", Text, nullable=False),
)
STATE = Table(
    "registry_state",
    _metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
#: How long to wait after a failed write before trying again.
RETRY_AFTER_FAILURE_S = 1.0


@dataclass(frozen=True)
class LoadedState:
    records: list[InstanceRecord]
    version: int
    #: Rows that could not be read (logged and skipped, never fatal).
    corrupt: int


class StateDatabase:
    """The registry's tables in any SQLAlchemy database (SQLite by default)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        _metadata.create_all(self.engine)

    def load(self) -> LoadedState:
        records: list[InstanceRecord] = []
        corrupt = 0
        with self.engine.connect() as conn:
            for app, instance_id, body in conn.execute(
                select(INSTANCES.c.app, INSTANCES.c.instance_id, INSTANCES.c.body)
            ):
                try:
                    records.append(record_from_json(body))
                except CorruptRecord as exc:
                    corrupt += 1
                    log.warning(
                        "skipping an unreadable persisted instance",
                        extra={"app": app, "instance_id": instance_id, "error": str(exc)},
                    )
            version = conn.execute(select(STATE.c.value).where(STATE.c.key == "version")).scalar()
        return LoadedState(records, int(version or 0), corrupt)

    def save(
        self, upserts: list[tuple[str, str, str]], deletes: list[tuple[str, str]], version: int
    ) -> None:
        """Apply one batch in one transaction: rows (app, id, body) to write, keys to drop."""
        with self.engine.begin() as conn:
            for app, instance_id in [*deletes, *((a, i) for a, i, _ in upserts)]:
                conn.execute(
                    delete(INSTANCES).where(
                        INSTANCES.c.app == app, INSTANCES.c.instance_id == instance_id
                    )
                )
            if upserts:
                conn.execute(
                    insert(INSTANCES),
                    [{"app": a, "instance_id": i, "body": b} for a, i, b in upserts],
                )
            conn.execute(delete(STATE).where(STATE.c.key == "version"))
            conn.execute(insert(STATE).values(key="version", value=str(version)))

    def close(self) -> None:
        self.engine.dispose()


class StateWriter:
    """Writes changed instances to a :class:`StateDatabase` in batches, off the loop."""

    def __init__(self, store: RegistryStore, *, delay_s: float) -> None:
        self._store = store
        self._db: StateDatabase | None = None
        self._delay_s = delay_s
        self._dirty: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        #: The registry version the database holds for sure.
        self.persisted_version = store.version
        self.failures = 0

    def on_change(self, change: Change) -> None:
        """Store listener: remember the instance for the next batch."""
        self._dirty.add((change.app, change.instance_id))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._dirty)

    async def open(self, db: StateDatabase) -> LoadedState:
        """Load the persisted state into the store, then write every change to ``db``."""
        loaded = await asyncio.to_thread(db.load)
        self._store.restore(loaded.records, loaded.version)
        self._db = db
        self.persisted_version = loaded.version
        self._task = asyncio.create_task(self._run(), name="registry-persistence")
        return loaded

    async def stop(self) -> None:
        """Write what is still dirty, then end the background task."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            if not self._stopping:
                await asyncio.sleep(self._delay_s)
            self._wake.clear()
            if not await self.flush() and not self._stopping:
                await asyncio.sleep(RETRY_AFTER_FAILURE_S)
                self._wake.set()
        await self.flush()

    async def flush(self) -> bool:
        """Write every dirty instance now; False (and kept dirty) if the write failed."""
        if self._db is None or (not self._dirty and self.persisted_version == self._store.version):
            return True
        db = self._db
        keys, self._dirty = self._dirty, set()
        version = self._store.version
        upserts, deletes = self._rows(keys)
        try:
            await asyncio.to_thread(db.save, upserts, deletes, version)
        except Exception as exc:
            self.failures += 1
            self._dirty |= keys
            log.error(
                "cannot persist the registry; retrying (memory stays authoritative)",
                extra={"error": f"{type(exc).__name__}: {exc}"[:300], "pending": len(keys)},
            )
            return False
        self.persisted_version = version
        return True

    def _rows(
        self, keys: Iterable[tuple[str, str]]
    ) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
        upserts: list[tuple[str, str, str]] = []
        deletes: list[tuple[str, str]] = []
        for app, instance_id in keys:
            rec = self._store.instance(app, instance_id)
            if rec is None:
                deletes.append((app, instance_id))
            else:
                upserts.append((app, instance_id, record_to_json(rec)))
        return upserts, deletes
