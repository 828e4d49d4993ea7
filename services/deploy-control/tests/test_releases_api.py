"""Release routes in-process (real key set, SQLite): roles, validation, unknown names, and
an unreachable gateway named in the error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimp_core.errors import ServiceUnavailable
from aimp_core.net import free_port
from aimp_deploy_control.revision_settings import RevisionSettings
from aimp_deploy_control.traffic import GatewayTraffic

from .dc_harness import bearer, in_process


@pytest.fixture
async def api(aimp_home: Path, dc_keys: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(dc_keys, home=aimp_home, database_url=None) as http:
        yield http


async def test_release_routes_need_an_operator(api: httpx.AsyncClient, dc_keys: Any) -> None:
    """Traffic, promote, rollback and new revisions are refused to readers (403)."""
    reader = bearer(dc_keys, "auditor")
    for method, path, body in (
        ("PUT", "/v1/deployments/iris/traffic", {"r1": 100}),
        ("POST", "/v1/deployments/iris/revisions/r2/promote", None),
        ("POST", "/v1/deployments/iris/rollback", None),
        ("POST", "/v1/deployments/iris/revisions", {"model_file": "/m.joblib"}),
    ):
        resp = await api.request(method, path, json=body, headers=reader)
        assert resp.status_code == 403, (path, resp.text)


async def test_unknown_deployments_and_bad_bodies(api: httpx.AsyncClient, dc_keys: Any) -> None:
    """An unknown deployment is a 404 naming it; weights outside 0..100 are a 422."""
    op = bearer(dc_keys, "operator")
    for method, path, body in (
        ("PUT", "/v1/deployments/ghost/traffic", {"r1": 100}),
        ("POST", "/v1/deployments/ghost/revisions/r2/promote", None),
        ("POST", "/v1/deployments/ghost/rollback", None),
    ):
        resp = await api.request(method, path, json=body, headers=op)
        assert resp.status_code == 404 and "'ghost'" in resp.json()["detail"], resp.text
    resp = await api.put("/v1/deployments/ghost/traffic", json={"r1": 120}, headers=op)
    assert resp.status_code == 422
    resp = await api.post(
        "/v1/deployments/ghost/revisions",
        json={"model_file": "/m.joblib", "model": "iris"},
        headers=op,
    )
    assert resp.status_code == 422 and "not both" in resp.text


async def test_an_unreachable_gateway_is_named() -> None:
    """A split cannot be written to a gateway that is down: 503 naming its address and
    how to fix it; without a client the 503 names the settings to set."""
    url = f"http://127.0.0.1:{free_port()}"
    settings = RevisionSettings(client_id="dc", client_secret="s", gateway_timeout_s=1)
    traffic = GatewayTraffic(settings, url)
    with pytest.raises(ServiceUnavailable, match=f"gateway at {url} did not answer"):
        await traffic.set_split("iris", {"r1": 100})
    await traffic.aclose()
    bare = GatewayTraffic(RevisionSettings(client_id=None, client_secret=None), url)
    with pytest.raises(ServiceUnavailable, match="AIMP_DEPLOY_CONTROL_CLIENT_ID"):
        await bare.set_split("iris", {"r1": 100})
    await bare.aclose()


async def test_a_new_revisions_settings_are_checked_before_anything_runs(
    api: httpx.AsyncClient, dc_keys: Any
) -> None:
    """AIMP_* env names are a 422 saying why; bounds above AIMP_MAX_REPLICAS a 400 naming
    the ceiling; inverted bounds a 422 naming both."""
    op = bearer(dc_keys, "operator")
    path = "/v1/deployments/iris/revisions"
    resp = await api.post(
        path, json={"model_file": "/m.joblib", "env": {"AIMP_HOME": "/x"}}, headers=op
    )
    assert resp.status_code == 422 and "AIMP_* variables are set by deploy-control" in resp.text
    resp = await api.post(path, json={"model_file": "/m.joblib", "max_scale": 9}, headers=op)
    assert resp.status_code == 400
    assert "max_scale 9 is above this deploy-control's ceiling of 8" in resp.json()["detail"]
    resp = await api.post(
        path, json={"model_file": "/m.joblib", "min_scale": 3, "max_scale": 2}, headers=op
    )
    assert resp.status_code == 422 and "min_scale 3 is above max_scale 2" in resp.text
