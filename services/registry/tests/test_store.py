"""Unit tests of the in-memory registry with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from aimp_registry.documents import parse_registration
from aimp_registry.model import ActionType, Status
from aimp_registry.store import InMemoryRegistry, RenewOutcome


@pytest.fixture
def store(clock: Any) -> InMemoryRegistry:
    return InMemoryRegistry(clock, lease_duration_s=90, renewal_interval_s=30)


@pytest.fixture
def register(store: InMemoryRegistry, clock: Any, make_body: Any) -> Any:
    def _register(app: str = "iris", instance_id: str = "iris-1", **kwargs: Any) -> Any:
        doc = make_body(app, instance_id, **kwargs)
        return store.register(parse_registration(doc, app, now_ms=clock()))

    return _register


def test_register_then_read_back(store: InMemoryRegistry, register: Any) -> None:
    """A registered instance is listed under its upper-cased app with a fresh lease."""
    rec = register("iris", "iris-1", port=9000)
    assert store.application("Iris") == [rec]
    assert store.instance("IRIS", "iris-1") is rec
    assert rec.status == Status.UP
    assert rec.action_type == ActionType.ADDED
    assert rec.lease.registration_ms == rec.lease.last_renewal_ms == rec.lease.service_up_ms
    assert rec.document["port"] == {"$": 9000, "@enabled": "true"}
    assert store.version == 1


def test_lease_duration_comes_from_lease_info(register: Any) -> None:
    """The lease length is the registration's durationInSecs, not the default."""
    assert register(lease_s=7).lease.duration_s == 7


def test_lease_expires_only_after_its_duration(
    store: InMemoryRegistry, register: Any, clock: Any
) -> None:
    """An instance survives until its last renewal is older than its lease, then is evicted."""
    register("iris", "a", lease_s=10)
    register("iris", "b", lease_s=30)
    clock.advance(10)
    assert store.evict_expired() == []
    clock.advance(0.001)
    assert [r.instance_id for r in store.evict_expired()] == ["a"]
    assert [r.instance_id for r in store.application("iris")] == ["b"]
    assert store.recent_changes()[-1].snapshot["actionType"] == "DELETED"
    assert store.recent_changes()[-1].snapshot["leaseInfo"]["evictionTimestamp"] == clock()


def test_renewal_postpones_expiry(store: InMemoryRegistry, register: Any, clock: Any) -> None:
    """A heartbeat restarts the lease, so an instance that keeps renewing is never evicted."""
    register(lease_s=10)
    for _ in range(5):
        clock.advance(8)
        assert store.renew("iris", "iris-1") == RenewOutcome.RENEWED
        assert store.evict_expired() == []
    clock.advance(10.001)
    assert len(store.evict_expired()) == 1


def test_renew_of_unknown_instance_is_not_found(store: InMemoryRegistry, register: Any) -> None:
    """Renewing an instance the registry never saw tells the client to re-register."""
    register()
    assert store.renew("iris", "nope") == RenewOutcome.NOT_FOUND
    assert store.renew("other", "iris-1") == RenewOutcome.NOT_FOUND


def test_renew_does_not_bump_the_version(store: InMemoryRegistry, register: Any) -> None:
    """A plain heartbeat is not a change: version and delta stay the same."""
    register()
    before = (store.version, len(store.recent_changes()))
    store.renew("iris", "iris-1", reported_status=Status.UP)
    assert (store.version, len(store.recent_changes())) == before


def test_renew_with_newer_client_document_asks_for_registration(
    store: InMemoryRegistry, register: Any, clock: Any
) -> None:
    """A heartbeat whose lastDirtyTimestamp is newer than ours is answered 'register again'."""
    rec = register(dirty_ms=clock() - 5000)
    assert store.renew("iris", "iris-1", client_dirty_ms=rec.last_dirty_ms) == RenewOutcome.RENEWED
    assert store.renew("iris", "iris-1", client_dirty_ms=clock()) == RenewOutcome.CLIENT_NEWER


def test_reported_status_in_heartbeat_is_applied(store: InMemoryRegistry, register: Any) -> None:
    """A heartbeat saying DOWN marks the instance DOWN, and UP brings it back, as changes."""
    register()
    store.renew("iris", "iris-1", reported_status=Status.DOWN)
    assert store.instance("iris", "iris-1").status == Status.DOWN  # type: ignore[union-attr]
    assert store.hashcode() == "DOWN_1_"
    store.renew("iris", "iris-1", reported_status=Status.UP)
    assert store.instance("iris", "iris-1").status == Status.UP  # type: ignore[union-attr]
    assert [c.snapshot["status"] for c in store.recent_changes()] == ["UP", "DOWN", "UP"]


def test_status_override_wins_over_registration_and_heartbeat(
    store: InMemoryRegistry, register: Any
) -> None:
    """OUT_OF_SERVICE set by an operator survives re-registration and UP heartbeats."""
    register()
    assert store.set_status_override("iris", "iris-1", Status.OUT_OF_SERVICE)
    rec = register()
    assert (rec.status, rec.overridden_status) == (Status.OUT_OF_SERVICE, Status.OUT_OF_SERVICE)
    assert store.renew("iris", "iris-1", reported_status=Status.UP) == RenewOutcome.RENEWED
    assert rec.status == Status.OUT_OF_SERVICE


def test_instance_reporting_down_beats_an_up_override(
    store: InMemoryRegistry, register: Any
) -> None:
    """Eureka's first rule: an instance that says it is DOWN is believed despite an override."""
    register()
    store.set_status_override("iris", "iris-1", Status.UP)
    assert register(status="DOWN").status == Status.DOWN


def test_deleting_override_makes_next_heartbeat_reregister(
    store: InMemoryRegistry, register: Any
) -> None:
    """Removing an override leaves the status UNKNOWN until the client registers again."""
    register()
    store.set_status_override("iris", "iris-1", Status.OUT_OF_SERVICE)
    assert store.delete_status_override("iris", "iris-1")
    rec = store.instance("iris", "iris-1")
    assert rec is not None
    assert (rec.status, rec.overridden_status) == (Status.UNKNOWN, Status.UNKNOWN)
    assert store.renew("iris", "iris-1") == RenewOutcome.NOT_FOUND
    assert register().status == Status.UP


def test_override_calls_on_unknown_instance_fail(store: InMemoryRegistry) -> None:
    """Status and metadata changes of an unknown instance report not-found."""
    assert not store.set_status_override("iris", "x", Status.DOWN)
    assert not store.delete_status_override("iris", "x")
    assert not store.update_metadata("iris", "x", {"a": "b"})
    assert not store.cancel("iris", "x")


def test_cancel_removes_instance_and_app(store: InMemoryRegistry, register: Any) -> None:
    """Cancelling the last instance removes the app; a second cancel is not-found."""
    register()
    assert store.cancel("IRIS", "iris-1")
    assert store.applications() == []
    assert not store.cancel("iris", "iris-1")


def test_metadata_update_merges_and_counts_as_change(
    store: InMemoryRegistry, register: Any
) -> None:
    """New metadata keys are merged into the old ones and show up in the delta."""
    register(metadata={"aimp.revision": "r1"})
    version = store.version
    assert store.update_metadata("iris", "iris-1", {"aimp.weight": "50"})
    rec = store.instance("iris", "iris-1")
    assert rec is not None and rec.metadata == {"aimp.revision": "r1", "aimp.weight": "50"}
    assert store.version == version + 1
    assert store.recent_changes()[-1].snapshot["actionType"] == "MODIFIED"


def test_hashcode_counts_statuses_sorted(store: InMemoryRegistry, register: Any) -> None:
    """apps__hashcode counts every app's instances by status, sorted by status name."""
    register("iris", "a")
    register("iris", "b")
    register("mnist", "c")
    register("mnist", "d", status="DOWN")
    store.set_status_override("iris", "b", Status.OUT_OF_SERVICE)
    assert store.hashcode() == "DOWN_1_OUT_OF_SERVICE_1_UP_2_"


def test_delta_keeps_three_minutes_of_changes(
    store: InMemoryRegistry, register: Any, clock: Any
) -> None:
    """Changes older than the retention window drop out of the change queue."""
    register("iris", "a")
    clock.advance(120)
    register("iris", "b")
    clock.advance(61)
    assert [c.instance_id for c in store.recent_changes()] == ["b"]
    clock.advance(120)
    assert store.recent_changes() == []


def test_older_registration_does_not_replace_newer_document(
    store: InMemoryRegistry, register: Any, clock: Any
) -> None:
    """A registration with an older lastDirtyTimestamp keeps the newer document (Eureka)."""
    register(port=9001, dirty_ms=clock())
    rec = register(port=9000, dirty_ms=clock() - 1000)
    assert rec.document["port"]["$"] == 9001


def test_reregistration_keeps_service_up_time(
    store: InMemoryRegistry, register: Any, clock: Any
) -> None:
    """serviceUpTimestamp records when the instance first came UP, across registrations."""
    first = register().lease.service_up_ms
    clock.advance(5)
    assert register().lease.service_up_ms == first


def test_reregistration_is_announced_as_modified(store: InMemoryRegistry, register: Any) -> None:
    """A known instance registering again shows up as MODIFIED, a new one as ADDED."""
    register("iris", "a")
    register("iris", "a", port=9001)
    assert [c.snapshot["actionType"] for c in store.recent_changes()] == ["ADDED", "MODIFIED"]
    assert [c.version for c in store.recent_changes()] == [1, 2]
