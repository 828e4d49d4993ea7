"""The config center's documents and versioned store (real SQLite, no network)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aimp_core.db import make_engine
from aimp_gateway.config_schemas import (
    ConfigDocument,
    RouteWrite,
    ServiceConfigWrite,
    to_snapshot,
)
from aimp_gateway.config_store import Change, ConfigStore, StaleVersion
from aimp_gateway.config_sync import load_snapshot
from aimp_gateway.policy import LbAlgorithm, RevisionWeight


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def config_store(tmp_path: Path) -> ConfigStore:
    store = ConfigStore(make_engine(f"sqlite:///{tmp_path / 'gateway.db'}"), now=Clock())
    store.create_tables()
    return store


def _set_weights(canary: int) -> Any:
    def mutate(doc: dict[str, Any]) -> dict[str, Any]:
        config = ServiceConfigWrite.model_validate(
            {"revisions": [{"revision": "r1", "weight": 100 - canary},
                           {"revision": "r2", "weight": canary}]}
        )  # fmt: skip
        document = ConfigDocument.model_validate(doc)
        document.services["resnet"] = config
        return document.dump()

    return mutate


def _change(action: str = "config.service.put", **kw: Any) -> Change:
    return Change(author="alice", action=action, target="config/services/resnet", **kw)


def test_every_change_is_a_new_version_with_the_whole_configuration(
    config_store: ConfigStore,
) -> None:
    """Versions count up from 1; each holds the complete document and who/when/what/why."""
    assert config_store.head() == 0
    assert load_snapshot(config_store).version == 0
    for canary in (10, 20, 30):
        config_store.change(_change(comment=f"canary {canary}"), _set_weights(canary))
    assert config_store.head() == 3
    second = config_store.get(2)
    assert second is not None
    assert second.document["services"]["resnet"]["revisions"][1]["weight"] == 20
    assert second.info.author == "alice" and second.info.comment == "canary 20"
    history = config_store.history(limit=10)
    assert [h.version for h in history] == [3, 2, 1]
    assert history[0].created_at > history[1].created_at
    assert [h.version for h in config_store.history(limit=10, before=3)] == [2, 1]
    snapshot = load_snapshot(config_store)
    assert snapshot.version == 3
    assert snapshot.policy("resnet").revisions == (
        RevisionWeight("r1", 70),
        RevisionWeight("r2", 30),
    )


def test_an_unchanged_document_stores_no_version(config_store: ConfigStore) -> None:
    """Writing what is already stored is a no-op: no new version, same before and after."""
    config_store.change(_change(), _set_weights(10))
    before, after = config_store.change(_change(), _set_weights(10))
    assert before.version == after.version == 1
    assert config_store.head() == 1


def test_stale_expected_version_is_refused_and_stores_nothing(config_store: ConfigStore) -> None:
    """A change based on an old version raises StaleVersion naming the newest one."""
    config_store.change(_change(), _set_weights(10))
    config_store.change(_change(), _set_weights(20))
    with pytest.raises(StaleVersion) as caught:
        config_store.change(_change(expected=1), _set_weights(50))
    assert (caught.value.expected, caught.value.current) == (1, 2)
    assert config_store.head() == 2
    _, after = config_store.change(_change(expected=2), _set_weights(50))
    assert after.version == 3


def test_a_refusing_mutation_stores_nothing(config_store: ConfigStore) -> None:
    """When the mutation raises, the error reaches the caller and no version is added."""

    def refuse(_: dict[str, Any]) -> dict[str, Any]:
        raise LookupError("no such route")

    with pytest.raises(LookupError):
        config_store.change(_change(), refuse)
    assert config_store.head() == 0


def test_racing_writers_each_get_their_own_version(tmp_path: Path) -> None:
    """Writers racing on two engines over one database never lose a change."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    stores = [ConfigStore(make_engine(url)) for _ in range(2)]
    stores[0].create_tables()

    def write(store: ConfigStore, who: int) -> None:
        for i in range(10):

            def add(doc: dict[str, Any], name: str = f"svc-{who}-{i}") -> dict[str, Any]:
                document = ConfigDocument.model_validate(doc)
                document.services[name] = ServiceConfigWrite()
                return document.dump()

            store.change(_change(), add)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latest = stores[0].latest()
    assert latest.version == 20
    assert len(latest.document["services"]) == 20


def test_rollback_document_is_the_old_one(config_store: ConfigStore) -> None:
    """Storing version N's document again gives a new version equal to N (history kept)."""
    config_store.change(_change(), _set_weights(10))
    config_store.change(_change(), _set_weights(90))
    old = config_store.get(1)
    assert old is not None
    _, after = config_store.change(_change("config.rollback"), lambda _: old.document)
    assert after.version == 3
    assert after.document == old.document
    assert config_store.head() == 3


# -- validation --------------------------------------------------------------------------


def _errors(model: type[Any], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"revisions": [{"revision": "a", "weight": 0}, {"revision": "b", "weight": 0}]},
         "every revision weight is 0"),
        ({"revisions": [{"revision": "a", "weight": -1}]}, "greater than or equal to 0"),
        ({"revisions": [{"revision": "a", "weight": 1}, {"revision": "a", "weight": 2}]},
         "listed twice"),
        ({"breaker": {"failure_rate_percent": 0}}, "greater than or equal to 1"),
        ({"breaker": {"failure_rate_percent": 101}}, "less than or equal to 100"),
        ({"breaker": {"window_size": 5, "minimum_calls": 10}}, "could never open"),
        ({"max_concurrent": 0}, "greater than or equal to 1"),
        ({"timeout_s": 0}, "greater than 0"),
        ({"timeout_s": 86400}, "less than or equal to 3600"),
        ({"lb": "random"}, "round_robin"),
        ({"retyr": {}}, "Extra inputs are not permitted"),
        ({"fallback": {"body": "!!", "base64": True}}, "not valid base64"),
    ],
)  # fmt: skip
def test_service_config_errors_say_what_is_wrong(data: dict[str, Any], message: str) -> None:
    """Each invalid service setting is refused with a message naming the problem."""
    assert message in _errors(ServiceConfigWrite, data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"path_prefix": "/admin/x", "service": "s"}, "overlaps '/admin'"),
        ({"path_prefix": "/v2", "service": "s"}, "overlaps '/v2'"),
        ({"path_prefix": "/", "service": "s"}, "overlaps"),
        ({"path_prefix": "shop", "service": "s"}, "should match pattern"),
        ({"path_prefix": "/shop", "service": "Bad_Name"}, "should match pattern"),
        ({"path_prefix": "/shop", "service": "s", "hosts": ["a.com:80"]}, "has a port"),
        ({"path_prefix": "/shop", "service": "s", "methods": ["BREW"]}, "GET"),
        ({"path_prefix": "/shop", "service": "s", "timeout_s": -1}, "greater than 0"),
    ],
)
def test_route_errors_say_what_is_wrong(data: dict[str, Any], message: str) -> None:
    """Each invalid route is refused with a message naming the problem."""
    assert message in _errors(RouteWrite, data)


def test_duplicate_route_ids_are_refused() -> None:
    """A whole document with one route id twice is refused."""
    route = {"route_id": "shop", "path_prefix": "/shop", "service": "s"}
    assert "appears twice" in _errors(ConfigDocument, {"routes": [route, route]})


def test_documents_become_policy_values() -> None:
    """A document converts to the data plane's frozen policy values, defaults filled in."""
    document = ConfigDocument.model_validate(
        {
            "services": {
                "resnet": {
                    "lb": "round_robin",
                    "pin_header": "X-Pin",
                    "breaker": None,
                    "fallback": {"status": 503, "body": "{}"},
                }
            },
            "routes": [
                {"route_id": "shop", "path_prefix": "/shop/", "service": "billing",
                 "headers": [{"name": "X-Tenant", "value": "blue"}], "methods": ["POST"]},
            ],
        }
    )  # fmt: skip
    snapshot = to_snapshot(7, document)
    policy = snapshot.policy("resnet")
    assert snapshot.version == 7
    assert policy.lb is LbAlgorithm.ROUND_ROBIN
    assert policy.pin_header == "x-pin"
    assert policy.breaker is None
    assert policy.fallback is not None and policy.fallback.body == b"{}"
    assert policy.retry.attempts == 2
    (route,) = snapshot.routes
    assert route.path_prefix == "/shop"
    assert route.headers[0].name == "x-tenant"
    assert snapshot.policy("unknown").lb is LbAlgorithm.LEAST_OUTSTANDING
