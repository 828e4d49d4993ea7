"""A revision's concurrency, scale bounds and environment: request validation, the scale
check, redaction of secret-ish values, and storage (old databases included)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aimp_core.db import make_engine
from aimp_core.errors import BadRequest
from aimp_deploy_control.revision_spec import (
    REDACTED,
    Serving,
    ServingPublic,
    check_bounds,
    check_scale,
    serving_differences,
)
from aimp_deploy_control.revision_store import RevisionFields
from aimp_deploy_control.schemas import DeploymentCreate, RevisionCreate
from aimp_deploy_control.store import DeploymentStore


def create(**fields: Any) -> DeploymentCreate:
    return DeploymentCreate.model_validate({"name": "iris", "model_file": "/m.joblib", **fields})


def refusal(**fields: Any) -> str:
    """The messages of the refusal, as the API's 422 body carries them (without the input)."""
    with pytest.raises(ValidationError) as caught:
        create(**fields)
    return "; ".join(e["msg"] for e in caught.value.errors())


def test_defaults_keep_todays_behaviour() -> None:
    """Without the new fields a revision has no concurrency or env of its own, min 0, no max,
    and starts 'replicas' pods."""
    req = create(replicas=3)
    assert req.initial == 3
    assert req.serving() == Serving(None, None, 0, None, 3, ())


def test_initial_scale_is_replicas_and_must_lie_within_the_bounds() -> None:
    """initial_scale is the same setting as replicas; min <= initial <= max is required,
    and each refusal names the numbers."""
    assert create(initial_scale=2, min_scale=1, max_scale=4).initial == 2
    assert create(initial_scale=2, replicas=2).initial == 2
    assert "initial_scale 2 and replicas 3 differ" in refusal(initial_scale=2, replicas=3)
    assert "min_scale 3 is above max_scale 2" in refusal(min_scale=3, max_scale=2, replicas=2)
    assert "initial_scale (replicas) 1 is outside min_scale 2 .. max_scale 5" in refusal(
        min_scale=2, max_scale=5
    )
    assert "initial_scale (replicas) 6 is outside min_scale 0 .. max_scale 5" in refusal(
        replicas=6, max_scale=5
    )
    assert "greater than or equal to 1" in refusal(concurrency=0)
    assert "greater than or equal to 0" in refusal(queue_size=-1)


def test_env_names_are_checked_and_aimp_names_refused() -> None:
    """Bad names and AIMP_* names are refused with the reason; values must be strings; the
    message never repeats a value."""
    assert "'1X' is not an environment variable name" in refusal(env={"1X": "v"})
    assert "'A-B' is not an environment variable name" in refusal(env={"A-B": "v"})
    message = refusal(env={"AIMP_SIDECAR_CONCURRENCY_LIMIT": "s3cr3t-value"})
    assert "AIMP_* variables are set by deploy-control" in message
    assert "use 'concurrency'" in message and "s3cr3t-value" not in message
    assert "AIMP_* variables" in refusal(env={"aimp_home": "x"})
    assert "NUL character" in refusal(env={"OK": "a\0b"})
    assert "valid string" in refusal(env={"N": 1})
    ok = RevisionCreate.model_validate({"model": "iris", "env": {"FOO": "bar", "_X1": ""}})
    assert ok.serving().env == (("FOO", "bar"), ("_X1", ""))


def test_secretish_values_are_redacted_in_views_and_differences() -> None:
    """Values of names like API_KEY or DB_PASSWORD show as redacted; a changed env is named
    by its variables only."""
    serving = Serving(env=(("API_KEY", "k1"), ("DB_PASSWORD", "p"), ("MODE", "fast")))
    view = ServingPublic.of(serving)
    assert view.env == {"API_KEY": REDACTED, "DB_PASSWORD": REDACTED, "MODE": "fast"}
    changed = Serving(concurrency=4, env=(("API_KEY", "k2"), ("MODE", "fast")))
    diff = serving_differences(serving, changed)
    assert diff == ["concurrency: None -> 4", "env: API_KEY, DB_PASSWORD differ"]
    assert not any("k1" in d or "k2" in d for d in diff)
    assert serving_differences(serving, serving) == []


def test_scale_requests_outside_the_bounds_name_them() -> None:
    """A scale request below min_scale or above max_scale (or the ceiling) is a 400 that
    names the bounds."""
    bounded = Serving(min_scale=1, max_scale=3)
    assert check_scale(3, bounded, "r2", 8) == 3
    with pytest.raises(BadRequest, match=r"revision r2 scales between 1 and 3 pods .*got 0"):
        check_scale(0, bounded, "r2", 8)
    with pytest.raises(BadRequest, match=r"between 0 and 8 pods .*AIMP_MAX_REPLICAS 8.*got 9"):
        check_scale(9, Serving(), "r1", 8)
    with pytest.raises(BadRequest, match="max_scale 9 is above this deploy-control's ceiling"):
        check_bounds(Serving(max_scale=9), 8)
    check_bounds(Serving(min_scale=2, max_scale=8), 8)


@given(
    low=st.integers(0, 20),
    span=st.integers(0, 20),
    ceiling=st.integers(1, 40),
    replicas=st.integers(0, 60),
    bounded=st.booleans(),
)
def test_check_scale_accepts_exactly_the_counts_within_the_bounds(
    low: int, span: int, ceiling: int, replicas: int, bounded: bool
) -> None:
    """A count is accepted iff min_scale <= count <= min(max_scale, ceiling)."""
    serving = Serving(min_scale=low, max_scale=low + span if bounded and low + span else None)
    high = min(serving.max_scale, ceiling) if serving.max_scale else ceiling
    if low <= replicas <= high:
        assert check_scale(replicas, serving, "r1", ceiling) == replicas
    else:
        with pytest.raises(BadRequest, match=f"got {replicas}"):
            check_scale(replicas, serving, "r1", ceiling)


#: The revisions table as the first deploy-control with revisions created it.
OLD_REVISIONS = """
CREATE TABLE revisions (
    id INTEGER NOT NULL, deployment VARCHAR(63) NOT NULL, number INTEGER NOT NULL,
    model_file VARCHAR(4096) NOT NULL, framework VARCHAR(32) NOT NULL,
    runtime VARCHAR(16) NOT NULL, model VARCHAR(63), model_version INTEGER,
    replicas INTEGER NOT NULL, resources_json TEXT, state VARCHAR(16) NOT NULL,
    traffic INTEGER NOT NULL, full_seq INTEGER NOT NULL,
    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL,
    PRIMARY KEY (id), UNIQUE (deployment, number)
)
"""


def test_serving_settings_are_stored_and_old_revisions_load_with_defaults(
    tmp_path: Path,
) -> None:
    """A revisions table from before these settings gets the column; its rows load with the
    defaults, and new revisions keep what they were given."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(OLD_REVISIONS)
        conn.execute(
            "INSERT INTO revisions VALUES (1, 'iris', 1, '/m/iris.joblib', 'sklearn', 'triton', "
            "NULL, NULL, 2, NULL, 'serving', 100, 1, '2026-01-01 10:00:00.000000', "
            "'2026-01-01 10:00:00.000000')"
        )
    store = DeploymentStore(make_engine(f"sqlite:///{db}"))
    store.create_schema()
    store.create_schema()  # a second start finds the column
    [old] = store.revisions("iris")
    assert old.serving == Serving()
    serving = Serving(2, 0, 1, 4, 2, (("FOO", "bar"),))
    store.add("fraud", "/m/f.joblib", "sklearn", "triton", 2, serving=serving)
    assert store.revisions("fraud")[0].serving == serving
    r2 = store.add_revision(
        "fraud", RevisionFields("/m/f2.joblib", "sklearn", "triton", None, 1, None, Serving())
    )
    assert r2.serving == Serving()
    store.engine.dispose()
