"""Unit tests of replication: Eureka's conflict rules, batching, forwarding decisions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from aimp_registry.app import create_app
from aimp_registry.deps import Forwarder
from aimp_registry.documents import parse_registration
from aimp_registry.interface import RenewOutcome
from aimp_registry.peers import (
    REPLICATION_HEADER,
    Action,
    Reaction,
    Task,
    coalesce,
    http_call,
    reaction,
)
from aimp_registry.settings import RegistrySettings
from aimp_registry.store import InMemoryRegistry

REPLICATED = {REPLICATION_HEADER: "true", "Accept": "application/json"}


@pytest.mark.parametrize(
    ("action", "code", "expected"),
    [
        (Action.HEARTBEAT, 200, Reaction.DONE),
        (Action.HEARTBEAT, 404, Reaction.RESEND_REGISTER),
        (Action.HEARTBEAT, 409, Reaction.TAKE_PEERS_COPY),
        (Action.HEARTBEAT, None, Reaction.RETRY),
        (Action.HEARTBEAT, 503, Reaction.RETRY),
        (Action.REGISTER, 204, Reaction.DONE),
        (Action.REGISTER, 400, Reaction.GIVE_UP),
        (Action.REGISTER, 404, Reaction.GIVE_UP),
        (Action.CANCEL, 404, Reaction.DONE),
        (Action.STATUS, 404, Reaction.RESEND_REGISTER),
        (Action.METADATA, 404, Reaction.RESEND_REGISTER),
        (Action.DELETE_STATUS, 409, Reaction.GIVE_UP),
    ],
)
def test_sender_reactions(action: Action, code: int | None, expected: Reaction) -> None:
    """A peer's answer maps to Eureka's sender behaviour."""
    assert reaction(action, code) == expected


def test_http_calls_are_eurekas_paths() -> None:
    """Each task replays as the Eureka REST call a client would make."""
    hb = Task(Action.HEARTBEAT, "IRIS", "i1", params={"status": "UP"})
    assert http_call(hb) == type(http_call(hb))("PUT", "/apps/IRIS/i1", {"status": "UP"}, None)
    assert (
        http_call(Task(Action.REGISTER, "IRIS", "i1", body={"instance": {}})).path == "/apps/IRIS"
    )
    assert http_call(Task(Action.CANCEL, "IRIS", "i1")).method == "DELETE"
    assert http_call(Task(Action.STATUS, "IRIS", "i1")).path == "/apps/IRIS/i1/status"
    assert http_call(Task(Action.DELETE_STATUS, "IRIS", "i1")).method == "DELETE"
    assert http_call(Task(Action.METADATA, "IRIS", "i1")).path == "/apps/IRIS/i1/metadata"


tasks = st.lists(
    st.tuples(st.sampled_from(list(Action)), st.sampled_from(["a", "b", "c"])), max_size=40
).map(lambda items: [Task(a, "APP", iid, params={"n": str(n)}) for n, (a, iid) in enumerate(items)])


@settings(deadline=None)  # a loaded CI machine must not make it flaky
@given(tasks)
def test_coalesce_keeps_each_instances_order_and_final_write(batch: list[Task]) -> None:
    """Groups are per instance, in order; the last write survives; cancels cut history."""
    groups = coalesce(batch)
    assert len({g[0].key for g in groups}) == len(groups)
    for group in groups:
        own = [t for t in batch if t.key == group[0].key]
        positions = [own.index(t) for t in group]
        assert positions == sorted(positions)
        assert group[-1] == own[-1]
        heartbeats = [t for t in group if t.action == Action.HEARTBEAT]
        assert len(heartbeats) <= 1
        if Action.CANCEL in [t.action for t in own]:
            last_cancel = max(i for i, t in enumerate(own) if t.action == Action.CANCEL)
            assert group[0] == own[last_cancel]


# -- the receiver's rules ------------------------------------------------------------------


@pytest.fixture
def store(clock: Any) -> InMemoryRegistry:
    return InMemoryRegistry(clock)


def test_replicated_heartbeat_dirty_timestamp_rules(
    store: InMemoryRegistry, clock: Any, make_body: Any
) -> None:
    """Newer at the sender: 404 (re-register); older: SERVER_NEWER for peers, OK for clients."""
    dirty = clock() - 1000
    store.register(parse_registration(make_body(dirty_ms=dirty), "iris", now_ms=clock()))
    renew = store.renew
    assert renew("iris", "iris-1", client_dirty_ms=dirty + 1, replicated=True) == (
        RenewOutcome.CLIENT_NEWER
    )
    assert renew("iris", "iris-1", client_dirty_ms=dirty - 1, replicated=True) == (
        RenewOutcome.SERVER_NEWER
    )
    assert renew("iris", "iris-1", client_dirty_ms=dirty - 1) == RenewOutcome.RENEWED
    assert renew("iris", "iris-1", client_dirty_ms=dirty, replicated=True) == RenewOutcome.RENEWED
    assert renew("iris", "ghost", client_dirty_ms=dirty, replicated=True) == (
        RenewOutcome.NOT_FOUND
    )


def test_stale_replicated_status_is_not_applied(
    store: InMemoryRegistry, clock: Any, make_body: Any
) -> None:
    """A peer's heartbeat for an older document does not overwrite our status."""
    dirty = clock()
    store.register(parse_registration(make_body(dirty_ms=dirty), "iris", now_ms=clock()))
    from aimp_registry.model import Status

    store.renew(
        "iris", "iris-1", reported_status=Status.DOWN, client_dirty_ms=dirty - 5, replicated=True
    )
    rec = store.instance("iris", "iris-1")
    assert rec is not None and rec.status == Status.UP


def test_forwarder_never_forwards_replicated_writes() -> None:
    """Client writes go to the replicator; writes from a peer stop here."""
    submitted: list[Task] = []

    class Recorder:
        def submit(self, task: Task) -> None:
            submitted.append(task)

    task = Task(Action.CANCEL, "IRIS", "i1")
    Forwarder(Recorder(), replicated=False).forward(task)  # type: ignore[arg-type]
    Forwarder(Recorder(), replicated=True).forward(task)  # type: ignore[arg-type]
    Forwarder(None, replicated=False).forward(task)
    assert submitted == [task]


# -- the same rules over HTTP, in-process ---------------------------------------------------


@pytest.fixture
def app(clock: Any, tmp_path: Path) -> FastAPI:
    return create_app(RegistrySettings(home=tmp_path, registry_persistence=False), clock=clock)


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
        yield client


async def test_http_conflict_answers(http: httpx.AsyncClient, clock: Any, make_body: Any) -> None:
    """Replicated heartbeat: 409 with our newer instance, 404 when the peer's is newer."""
    body = make_body(dirty_ms=clock(), port=9001)
    assert (await http.post("/eureka/apps/iris", json=body)).status_code == 204
    older = await http.put(
        "/eureka/apps/iris/iris-1",
        params={"lastDirtyTimestamp": clock() - 10, "status": "UP"},
        headers=REPLICATED,
    )
    assert older.status_code == 409
    assert older.json()["instance"]["port"]["$"] == 9001
    assert older.json()["instance"]["lastDirtyTimestamp"] == str(clock())
    newer = await http.put(
        "/eureka/apps/iris/iris-1", params={"lastDirtyTimestamp": clock() + 10}, headers=REPLICATED
    )
    assert newer.status_code == 404
    client = await http.put("/eureka/apps/iris/iris-1", params={"lastDirtyTimestamp": clock() - 10})
    assert client.status_code == 200


async def test_replicated_override_in_heartbeat_is_kept(
    http: httpx.AsyncClient, clock: Any, make_body: Any
) -> None:
    """A peer's heartbeat naming an override makes this node hold the same override."""
    assert (
        await http.post("/eureka/apps/iris", json=make_body(dirty_ms=clock()))
    ).status_code == 204
    resp = await http.put(
        "/eureka/apps/iris/iris-1",
        params={
            "overriddenstatus": "OUT_OF_SERVICE",
            "status": "UP",
            "lastDirtyTimestamp": clock(),
        },
        headers=REPLICATED,
    )
    assert resp.status_code == 200
    inst = (await http.get("/eureka/apps/iris/iris-1", headers=REPLICATED)).json()["instance"]
    assert (inst["status"], inst["overriddenStatus"]) == ("OUT_OF_SERVICE", "OUT_OF_SERVICE")
