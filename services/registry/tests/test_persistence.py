"""Persistence: record round trip, the SQL adapter, the batching writer, restore on start."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from aimp_registry.documents import parse_registration, render_instance
from aimp_registry.model import ActionType, InstanceRecord, Lease, Status
from aimp_registry.persistence import INSTANCES, StateDatabase, StateWriter
from aimp_registry.records import CorruptRecord, record_from_json, record_to_json
from aimp_registry.store import InMemoryRegistry

names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=20)
millis = st.integers(min_value=0, max_value=2**45)
records = st.builds(
    InstanceRecord,
    app=names,
    instance_id=names,
    document=st.dictionaries(names, st.one_of(names, st.integers(), st.booleans()), max_size=5),
    status=st.sampled_from(list(Status)),
    overridden_status=st.sampled_from(list(Status)),
    lease=st.builds(
        Lease,
        duration_s=st.integers(1, 10_000),
        renewal_interval_s=st.integers(1, 1000),
        registration_ms=millis,
        last_renewal_ms=millis,
        eviction_ms=millis,
        service_up_ms=millis,
    ),
    last_updated_ms=millis,
    last_dirty_ms=millis,
    action_type=st.sampled_from(list(ActionType)),
    metadata=st.dictionaries(names, names, max_size=5),
)


@settings(deadline=None)  # a loaded CI machine must not make it flaky
@given(records)
def test_record_json_round_trip(rec: InstanceRecord) -> None:
    """Every record survives JSON and back unchanged."""
    assert record_from_json(record_to_json(rec)) == rec


@pytest.mark.parametrize("text", ["{", "[]", '{"v": 99}', '{"v": 1, "app": "A"}'])
def test_corrupt_records_raise(text: str) -> None:
    """Unreadable rows raise CorruptRecord rather than crashing the loader."""
    with pytest.raises(CorruptRecord):
        record_from_json(text)


@pytest.fixture
def store(clock: Any) -> InMemoryRegistry:
    return InMemoryRegistry(clock)


@pytest.fixture
def db(tmp_path: Path) -> StateDatabase:
    return StateDatabase(f"sqlite:///{tmp_path / 'state.db'}")


def _register(store: InMemoryRegistry, clock: Any, make_body: Any, iid: str, **kw: Any) -> None:
    store.register(parse_registration(make_body("iris", iid, **kw), "iris", now_ms=clock()))


async def test_writer_round_trip_restores_everything(
    store: InMemoryRegistry, db: StateDatabase, clock: Any, make_body: Any
) -> None:
    """Documents, metadata, statuses, overrides and leases come back after a restart."""
    writer = StateWriter(store, delay_s=0)
    store.add_listener(writer.on_change)
    await writer.open(db)
    _register(store, clock, make_body, "a", metadata={"aimp.revision": "r1"}, lease_s=30)
    _register(store, clock, make_body, "b", status="DOWN")
    _register(store, clock, make_body, "gone")
    store.set_status_override("iris", "a", Status.OUT_OF_SERVICE)
    store.update_metadata("iris", "a", {"aimp.weight": "5"})
    store.cancel("iris", "gone")
    await writer.stop()
    assert writer.persisted_version == store.version == 6

    clock.advance(3600)  # an hour of downtime, far beyond every lease
    fresh = InMemoryRegistry(clock)
    loaded = StateDatabase(str(db.engine.url)).load()
    fresh.restore(loaded.records, loaded.version)
    assert fresh.version == 6
    before = {r.instance_id: render_instance(r) for _, i in store.applications() for r in i}
    after = {r.instance_id: render_instance(r) for _, i in fresh.applications() for r in i}
    assert sorted(after) == ["a", "b"]
    for iid in after:
        assert after[iid]["leaseInfo"]["lastRenewalTimestamp"] == clock()  # grace
        assert (
            after[iid]["leaseInfo"]["durationInSecs"] == before[iid]["leaseInfo"]["durationInSecs"]
        )
        del after[iid]["leaseInfo"]["lastRenewalTimestamp"]
        del before[iid]["leaseInfo"]["lastRenewalTimestamp"]
    assert after == before
    a = fresh.instance("iris", "a")
    assert a is not None and a.status == Status.OUT_OF_SERVICE
    # the override is live again: an UP registration keeps OUT_OF_SERVICE
    _register(fresh, clock, make_body, "a", lease_s=30)
    assert fresh.instance("iris", "a").status == Status.OUT_OF_SERVICE  # type: ignore[union-attr]
    # and the grace period is a full lease from the restart
    clock.advance(29)
    assert fresh.evict_expired() == []
    clock.advance(2)
    assert [r.instance_id for r in fresh.evict_expired()] == ["a"]  # a's lease is 30 s
    clock.advance(60)
    assert [r.instance_id for r in fresh.evict_expired()] == ["b"]


async def test_writer_batches_changes(
    store: InMemoryRegistry, db: StateDatabase, clock: Any, make_body: Any
) -> None:
    """A burst of changes is written as one batch after the delay, off the event loop."""
    saves: list[int] = []
    real_save = db.save

    def counting_save(*args: Any) -> None:
        saves.append(args[2])
        real_save(*args)

    db.save = counting_save  # type: ignore[method-assign]
    writer = StateWriter(store, delay_s=0.05)
    store.add_listener(writer.on_change)
    await writer.open(db)
    for i in range(50):
        _register(store, clock, make_body, f"i{i}")
    assert writer.pending == 50 and saves == []
    for _ in range(100):
        await asyncio.sleep(0.01)
        if writer.persisted_version == 50:
            break
    assert saves == [50] and writer.pending == 0
    await writer.stop()
    assert len(db.load().records) == 50


async def test_failed_write_is_retried(
    store: InMemoryRegistry, db: StateDatabase, clock: Any, make_body: Any
) -> None:
    """When the database refuses a batch the changes stay dirty and are written later."""
    writer = StateWriter(store, delay_s=0)
    store.add_listener(writer.on_change)
    await writer.open(db)
    real_save, calls = db.save, []

    def flaky(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        real_save(*args)

    db.save = flaky  # type: ignore[method-assign]
    _register(store, clock, make_body, "a")
    assert not await writer.flush()
    assert writer.pending == 1 and writer.failures == 1
    assert await writer.flush()
    assert writer.persisted_version == 1
    await writer.stop()


def test_corrupt_rows_are_skipped_on_load(db: StateDatabase) -> None:
    """A damaged row is counted and skipped; the others load."""
    rec = InstanceRecord(
        "IRIS",
        "ok",
        {"instanceId": "ok"},
        Status.UP,
        Status.UNKNOWN,
        Lease(90, 30, 1, 1),
        1,
        1,
        ActionType.ADDED,
    )
    db.save([("IRIS", "ok", record_to_json(rec))], [], 3)
    with db.engine.begin() as conn:
        conn.execute(insert(INSTANCES).values(app="IRIS", instance_id="bad", body="{"))
    loaded = db.load()
    assert [r.instance_id for r in loaded.records] == ["ok"]
    assert (loaded.version, loaded.corrupt) == (3, 1)
