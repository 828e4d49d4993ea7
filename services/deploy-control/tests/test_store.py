"""Tests of the deployments store on real SQLite files, including older databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aimp_core.db import make_engine
from aimp_deploy_control.revision_store import RevisionFields
from aimp_deploy_control.revisions import RevisionState
from aimp_deploy_control.store import DeploymentStore

#: The table exactly as the first deploy-control created it (no runtime column).
V1_SCHEMA = """
CREATE TABLE deployments (
    id INTEGER NOT NULL, name VARCHAR(63) NOT NULL, model_file VARCHAR(4096) NOT NULL,
    framework VARCHAR(32) NOT NULL, replicas INTEGER NOT NULL,
    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL,
    PRIMARY KEY (id), UNIQUE (name)
)
"""


def test_a_database_from_the_previous_version_loads(tmp_path: Path) -> None:
    """Rows written before runtimes and model versions existed load as runtime 'triton'
    serving their model_file, and stay writable."""
    db = tmp_path / "deploy_control.db"
    with sqlite3.connect(db) as conn:
        conn.execute(V1_SCHEMA)
        conn.execute(
            "INSERT INTO deployments VALUES (1, 'iris', '/m/iris.joblib', 'sklearn', 2, "
            "'2026-01-01 10:00:00.000000', '2026-01-01 10:00:00.000000')"
        )
    store = DeploymentStore(make_engine(f"sqlite:///{db}"))
    store.create_schema()
    store.create_schema()  # idempotent: a second start finds the column
    old = store.get("iris")
    assert old is not None
    assert (old.runtime, old.framework, old.replicas) == ("triton", "sklearn", 2)
    assert old.spec() == {
        "model_file": "/m/iris.joblib",
        "runtime": "triton",
        "framework": "sklearn",
        "model": None,
        "model_version": None,
    }
    new = store.add("fraud", "/m/fraud.joblib", "sklearn", "java", 1)
    assert store.get("fraud") == new and new.runtime == "java"
    scaled = store.set_replicas("iris", 0)
    assert scaled is not None and scaled.replicas == 0 and scaled.updated_at > old.updated_at
    assert store.set_replicas("ghost", 1) is None
    served = store.add("churn", "", "onnx", "triton", 1, ("churn", 3))
    assert (served.model, served.model_version) == ("churn", 3)
    assert store.get("churn") == served
    store.engine.dispose()


def test_a_new_database_has_the_runtime_column(tmp_path: Path) -> None:
    """A fresh database stores each deployment's runtime."""
    store = DeploymentStore(make_engine(f"sqlite:///{tmp_path / 'new.db'}"))
    store.create_schema()
    store.add("iris", "/m/iris.joblib", "sklearn", "cpp", 3)
    assert [(d.name, d.runtime, d.replicas) for d in store.list()] == [("iris", "cpp", 3)]
    store.engine.dispose()


def test_an_older_deployment_becomes_r1_with_all_traffic(tmp_path: Path) -> None:
    """A deployment stored before revisions existed gets r1 (serving, 100%, its replicas);
    a new deployment starts with r1 starting, and later revisions number on from there."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(V1_SCHEMA)
        conn.execute(
            "INSERT INTO deployments VALUES (1, 'iris', '/m/iris.joblib', 'sklearn', 2, "
            "'2026-01-01 10:00:00.000000', '2026-01-01 10:00:00.000000')"
        )
    store = DeploymentStore(make_engine(f"sqlite:///{db}"))
    store.create_schema()
    store.create_schema()  # a second start adds no second r1
    [r1] = store.revisions("iris")
    assert (r1.name, r1.state, r1.traffic, r1.replicas, r1.full_seq) == (
        "r1",
        RevisionState.SERVING,
        100,
        2,
        1,
    )
    store.add("fraud", "/m/f.joblib", "sklearn", "triton", 1, resources={"cpu": 0.5})
    [first] = store.revisions("fraud")
    assert (first.state, first.traffic, first.resources) == (
        RevisionState.STARTING,
        100,
        {"cpu": 0.5},
    )
    r2 = store.add_revision("fraud", RevisionFields("/m/f2.joblib", "sklearn", "cpp", None, 3))
    assert (r2.name, r2.traffic, r2.state) == ("r2", 0, RevisionState.STARTING)
    store.change_revisions(
        "fraud",
        traffic={"r1": 0, "r2": 100},
        states={"r2": RevisionState.SERVING},
        full_seq={"r2": 2},
    )
    dep = store.get("fraud")
    assert dep is not None and (dep.runtime, dep.replicas, dep.model_file) == (
        "cpp",
        3,
        "/m/f2.joblib",
    )  # the deployment's own row follows its primary revision
    assert store.delete("fraud") and store.revisions("fraud") == []
    store.engine.dispose()
