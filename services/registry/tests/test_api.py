"""The Eureka REST API in-process (httpx ASGITransport): JSON and XML shapes, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml import ElementTree as SafeET
from fastapi import FastAPI
from py_eureka_client import eureka_basic

from aimp_registry import xmlcodec
from aimp_registry.app import create_app
from aimp_registry.settings import RegistrySettings

JSON = {"Accept": "application/json"}
PROBLEM = "application/problem+json"


@pytest.fixture
def app(clock: Any, tmp_path: Path) -> FastAPI:
    settings = RegistrySettings(registry_eviction_interval_s=0.02, home=tmp_path)
    return create_app(settings, clock=clock)


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as client:
        yield client


@pytest.fixture
def register(http: httpx.AsyncClient, make_body: Any) -> Any:
    async def _register(app: str = "iris", instance_id: str = "iris-1", **kw: Any) -> None:
        resp = await http.post(f"/eureka/apps/{app}", json=make_body(app, instance_id, **kw))
        assert resp.status_code == 204, resp.text

    return _register


async def test_json_applications_shape(http: httpx.AsyncClient, register: Any, clock: Any) -> None:
    """GET /eureka/apps with Accept JSON returns Eureka's exact JSON structure."""
    await register("iris", "iris-1", port=9000, metadata={"aimp.revision": "r1"})
    resp = await http.get("/eureka/apps", headers=JSON)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    apps = resp.json()["applications"]
    assert (apps["versions__delta"], apps["apps__hashcode"]) == ("1", "UP_1_")
    [application] = apps["application"]
    assert application["name"] == "IRIS"
    [inst] = application["instance"]
    assert inst["instanceId"] == "iris-1"
    assert (inst["app"], inst["ipAddr"], inst["status"]) == ("IRIS", "127.0.0.1", "UP")
    assert inst["overriddenStatus"] == "UNKNOWN"
    assert inst["port"] == {"$": 9000, "@enabled": "true"}
    assert inst["securePort"]["@enabled"] == "false"
    assert inst["dataCenterInfo"] == {
        "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
        "name": "MyOwn",
    }
    assert inst["leaseInfo"] == {
        "renewalIntervalInSecs": 30,
        "durationInSecs": 90,
        "registrationTimestamp": clock(),
        "lastRenewalTimestamp": clock(),
        "evictionTimestamp": 0,
        "serviceUpTimestamp": clock(),
    }
    assert inst["metadata"] == {"aimp.revision": "r1"}
    assert inst["lastUpdatedTimestamp"] == str(clock())
    assert isinstance(inst["lastDirtyTimestamp"], str)
    assert inst["actionType"] == "ADDED"
    assert inst["vipAddress"] == "iris"


async def test_empty_metadata_uses_eurekas_marker(http: httpx.AsyncClient, register: Any) -> None:
    """An instance without metadata shows Eureka's {"@class": EmptyMap} marker."""
    await register()
    inst = (await http.get("/eureka/apps/iris/iris-1", headers=JSON)).json()["instance"]
    assert inst["metadata"] == {"@class": "java.util.Collections$EmptyMap"}


async def test_xml_is_the_default_and_py_eureka_client_parses_it(
    http: httpx.AsyncClient, register: Any
) -> None:
    """Without a JSON Accept header the answer is XML that py-eureka-client's parser reads."""
    await register("iris", "iris-1", port=9000, metadata={"aimp.revision": "r1"})
    await register("mnist", "mnist-1", status="DOWN")
    resp = await http.get("/eureka/apps/")
    assert resp.headers["content-type"].startswith("application/xml")
    root = SafeET.fromstring(resp.content)
    assert root.tag == "applications"
    assert root.findtext("apps__hashcode") == "DOWN_1_UP_1_"
    port = root.find("application/instance/port")
    assert port is not None and port.attrib == {"enabled": "true"} and port.text == "9000"
    apps = eureka_basic._build_applications(root)
    assert apps.versionsDelta == "2"
    iris = apps.get_application("IRIS").instances[0]
    assert (iris.instanceId, iris.port.port, iris.status) == ("iris-1", 9000, "UP")
    assert iris.metadata == {"aimp.revision": "r1"}
    assert iris.dataCenterInfo.name == "MyOwn"
    assert iris.leaseInfo.durationInSecs == 90
    assert apps.get_application("MNIST").instances[0].status == "DOWN"


async def test_xml_registration(http: httpx.AsyncClient, make_body: Any) -> None:
    """POST with an XML <instance> body registers the instance (204)."""
    xml = xmlcodec.dumps(make_body("iris", "iris-x", port=7000))
    resp = await http.post(
        "/eureka/apps/IRIS", content=xml, headers={"Content-Type": "application/xml"}
    )
    assert resp.status_code == 204, resp.text
    inst = (await http.get("/eureka/instances/iris-x", headers=JSON)).json()["instance"]
    assert inst["port"] == {"$": 7000, "@enabled": "true"}


@pytest.mark.parametrize(
    ("content", "content_type", "needle"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"<instance><app>IRIS", "application/xml", "not acceptable XML"),
        (b"", "application/json", "empty"),
        (b'{"instance": {"app": "IRIS", "hostName": "h"}}', "application/json", "ipAddr"),
        (b'{"instance": {"hostName": "h", "ipAddr": "1.2.3.4"}}', "application/json", "app"),
    ],
)
async def test_bad_registration_is_400_problem(
    http: httpx.AsyncClient, content: bytes, content_type: str, needle: str
) -> None:
    """Unparseable or incomplete bodies get a 400 problem+json naming what is wrong."""
    resp = await http.post(
        "/eureka/apps/IRIS", content=content, headers={"Content-Type": content_type}
    )
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert needle in resp.json()["detail"]


async def test_port_not_a_number_is_400(http: httpx.AsyncClient, make_body: Any) -> None:
    """A port that is not a number is rejected, naming instance.port."""
    doc = make_body()
    doc["instance"]["port"]["$"] = "http"
    resp = await http.post("/eureka/apps/iris", json=doc)
    assert resp.status_code == 400
    assert "instance.port" in resp.json()["detail"]


async def test_heartbeat(http: httpx.AsyncClient, register: Any, clock: Any) -> None:
    """PUT renews a known instance (200) and answers 404 for an unknown one."""
    await register()
    clock.advance(5)
    assert (await http.put("/eureka/apps/iris/iris-1")).status_code == 200
    inst = (await http.get("/eureka/apps/IRIS/iris-1", headers=JSON)).json()["instance"]
    assert inst["leaseInfo"]["lastRenewalTimestamp"] == clock()
    missing = await http.put("/eureka/apps/iris/ghost")
    assert missing.status_code == 404
    assert "POST /eureka/apps/IRIS" in missing.json()["detail"]


async def test_heartbeat_query_parameters(
    http: httpx.AsyncClient, register: Any, clock: Any
) -> None:
    """status= is applied, a newer lastDirtyTimestamp gets 404, bad values get 400."""
    await register(dirty_ms=clock())
    resp = await http.put(
        "/eureka/apps/iris/iris-1", params={"status": "DOWN", "lastDirtyTimestamp": clock()}
    )
    assert resp.status_code == 200
    assert (await http.get("/eureka/apps", headers=JSON)).json()["applications"][
        "apps__hashcode"
    ] == "DOWN_1_"
    newer = await http.put("/eureka/apps/iris/iris-1", params={"lastDirtyTimestamp": clock() + 1})
    assert newer.status_code == 404
    bad = await http.put("/eureka/apps/iris/iris-1", params={"status": "FINE"})
    assert bad.status_code == 400 and "status" in bad.json()["detail"]


async def test_status_override_and_delete(http: httpx.AsyncClient, register: Any) -> None:
    """PUT status pins OUT_OF_SERVICE; DELETE removes the override (status UNKNOWN)."""
    await register()
    resp = await http.put("/eureka/apps/iris/iris-1/status", params={"value": "OUT_OF_SERVICE"})
    assert resp.status_code == 200
    inst = (await http.get("/eureka/apps/iris/iris-1", headers=JSON)).json()["instance"]
    assert (inst["status"], inst["overriddenStatus"]) == ("OUT_OF_SERVICE", "OUT_OF_SERVICE")
    assert inst["actionType"] == "MODIFIED"
    assert (await http.delete("/eureka/apps/iris/iris-1/status")).status_code == 200
    inst = (await http.get("/eureka/apps/iris/iris-1", headers=JSON)).json()["instance"]
    assert (inst["status"], inst["overriddenStatus"]) == ("UNKNOWN", "UNKNOWN")
    assert (await http.put("/eureka/apps/iris/iris-1")).status_code == 404  # re-register


async def test_status_errors(http: httpx.AsyncClient, register: Any) -> None:
    """A missing or unknown status value is 400; an unknown instance is 404."""
    await register()
    assert (await http.put("/eureka/apps/iris/iris-1/status")).status_code == 400
    bad = await http.put("/eureka/apps/iris/iris-1/status", params={"value": "MAYBE"})
    assert bad.status_code == 400
    ghost = await http.put("/eureka/apps/iris/ghost/status", params={"value": "DOWN"})
    assert ghost.status_code == 404
    assert (await http.delete("/eureka/apps/iris/ghost/status")).status_code == 404


async def test_metadata_update(http: httpx.AsyncClient, register: Any) -> None:
    """PUT metadata?key=value merges keys into the instance's metadata."""
    await register(metadata={"aimp.revision": "r1"})
    resp = await http.put("/eureka/apps/iris/iris-1/metadata", params={"aimp.weight": "25"})
    assert resp.status_code == 200
    inst = (await http.get("/eureka/apps/iris/iris-1", headers=JSON)).json()["instance"]
    assert inst["metadata"] == {"aimp.revision": "r1", "aimp.weight": "25"}
    bad = await http.put("/eureka/apps/iris/iris-1/metadata", params={"a b": "1"})
    assert bad.status_code == 400


async def test_cancel(http: httpx.AsyncClient, register: Any) -> None:
    """DELETE removes the instance (200); the app then 404s and so does a second DELETE."""
    await register()
    assert (await http.delete("/eureka/apps/IRIS/iris-1")).status_code == 200
    assert (await http.get("/eureka/apps/IRIS", headers=JSON)).status_code == 404
    assert (await http.delete("/eureka/apps/IRIS/iris-1")).status_code == 404


async def test_single_application_and_instance_reads(
    http: httpx.AsyncClient, register: Any
) -> None:
    """/apps/{APP} is case-insensitive; /apps/{APP}/{ID} and /instances/{ID} find one."""
    await register("iris", "a")
    await register("iris", "b")
    app = (await http.get("/eureka/apps/Iris", headers=JSON)).json()["application"]
    assert app["name"] == "IRIS"
    assert [i["instanceId"] for i in app["instance"]] == ["a", "b"]
    xml_app = SafeET.fromstring((await http.get("/eureka/apps/iris")).content)
    assert [i.instanceId for i in eureka_basic._build_application(xml_app).instances] == ["a", "b"]
    assert (await http.get("/eureka/instances/b", headers=JSON)).json()["instance"]["app"] == "IRIS"
    assert (await http.get("/eureka/instances/zzz")).status_code == 404
    assert (await http.get("/eureka/apps/iris/zzz")).status_code == 404


async def test_vip_lookups(http: httpx.AsyncClient, register: Any, make_body: Any) -> None:
    """/vips and /svips return only instances with that (secure) VIP address."""
    await register("iris", "a")
    doc = make_body("mnist", "m")
    doc["instance"]["vipAddress"] = "digits,mnist"
    doc["instance"]["secureVipAddress"] = "secure-digits"
    assert (await http.post("/eureka/apps/mnist", json=doc)).status_code == 204
    vip = (await http.get("/eureka/vips/digits", headers=JSON)).json()["applications"]
    assert [a["name"] for a in vip["application"]] == ["MNIST"]
    assert vip["apps__hashcode"] == "UP_1_"
    svip = (await http.get("/eureka/svips/secure-digits", headers=JSON)).json()["applications"]
    assert [a["name"] for a in svip["application"]] == ["MNIST"]
    none = (await http.get("/eureka/vips/nothing", headers=JSON)).json()["applications"]
    assert none["application"] == []


async def test_delta_lists_recent_changes_with_action(
    http: httpx.AsyncClient, register: Any, clock: Any
) -> None:
    """The delta carries changed instances with actionType and the full registry's hashcode."""
    await register("iris", "a")
    await register("iris", "b")
    clock.advance(200)
    assert (await http.delete("/eureka/apps/iris/a")).status_code == 200
    await http.put("/eureka/apps/iris/b/status", params={"value": "OUT_OF_SERVICE"})
    delta = (await http.get("/eureka/apps/delta", headers=JSON)).json()["applications"]
    assert delta["versions__delta"] == "4"
    assert delta["apps__hashcode"] == "OUT_OF_SERVICE_1_"
    [app] = delta["application"]
    assert [(i["instanceId"], i["actionType"]) for i in app["instance"]] == [
        ("a", "DELETED"),
        ("b", "MODIFIED"),
    ]
    parsed = eureka_basic._build_applications(
        SafeET.fromstring((await http.get("/eureka/apps/delta")).content)
    )
    assert [i.actionType for i in parsed.applications[0].instances] == ["DELETED", "MODIFIED"]


async def test_metrics_and_readiness(http: httpx.AsyncClient, register: Any) -> None:
    """/metrics shows instances by app and status and operation counts; /readyz is 200."""
    await register("iris", "a")
    await http.put("/eureka/apps/iris/a")
    text = (await http.get("/metrics")).text
    assert 'aimp_registry_instances{app="IRIS",status="UP"} 1.0' in text
    assert 'aimp_registry_operations_total{operation="register",outcome="ok"}' in text
    assert 'aimp_registry_operations_total{operation="renew",outcome="ok"}' in text
    assert (await http.get("/readyz")).status_code == 200


async def test_eviction_task_runs_in_lifespan(
    app: FastAPI, http: httpx.AsyncClient, register: Any, clock: Any
) -> None:
    """With the lifespan open, an instance whose lease ran out disappears within a tick."""
    async with app.router.lifespan_context(app):
        await register("iris", "short", lease_s=1)
        await register("iris", "long", lease_s=60)
        clock.advance(2)
        for _ in range(100):
            await asyncio.sleep(0.01)
            names = [
                i["instanceId"]
                for i in (await http.get("/eureka/apps/iris", headers=JSON)).json()["application"][
                    "instance"
                ]
            ]
            if names == ["long"]:
                break
        assert names == ["long"]
    text = (await http.get("/metrics")).text
    assert 'aimp_registry_operations_total{operation="evict",outcome="ok"}' in text


async def test_oversized_registration_is_413(http: httpx.AsyncClient, make_body: Any) -> None:
    """A registration body beyond 64 KiB is refused before it is parsed."""
    doc = make_body(metadata={f"k{i}": "x" * 100 for i in range(1000)})
    resp = await http.post("/eureka/apps/iris", json=doc)
    assert resp.status_code == 413
    assert resp.headers["content-type"].startswith(PROBLEM)


async def test_gzip_when_asked_and_large(http: httpx.AsyncClient, register: Any) -> None:
    """Listings above 1 KiB are gzipped for clients that accept it; small answers are not."""
    for i in range(4):
        await register("iris", f"g-{i}")
    gz = {**JSON, "Accept-Encoding": "gzip"}
    big = await http.get("/eureka/apps", headers=gz)
    assert big.headers["content-encoding"] == "gzip"
    assert len(big.json()["applications"]["application"][0]["instance"]) == 4
    plain = await http.get("/eureka/apps", headers={**JSON, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    small = await http.get("/eureka/apps/iris/g-0", headers=gz)
    assert "content-encoding" not in small.headers


@pytest.mark.parametrize("enabled", [True, False])
async def test_self_preservation_is_visible_and_switchable(
    clock: Any, tmp_path: Path, make_body: Any, enabled: bool
) -> None:
    """A lone silent instance: kept and reported while self-preservation is on, else evicted."""
    settings = RegistrySettings(
        home=tmp_path, registry_eviction_interval_s=0.01, registry_self_preservation=enabled
    )
    app = create_app(settings, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://r") as http,
        app.router.lifespan_context(app),
    ):
        assert (await http.post("/eureka/apps/iris", json=make_body())).status_code == 204
        clock.advance(91)
        await asyncio.sleep(0.1)
        status = (await http.get("/eureka/status")).json()
        preservation = status["self_preservation"]
        assert preservation["enabled"] is enabled and preservation["active"] is enabled
        assert status["instances"] == (1 if enabled else 0)
        if enabled:  # one instance renewing every 30 s: 2 a minute expected, 1.7 needed
            assert preservation["expected_renewals"] == 2.0
            assert preservation["threshold"] == pytest.approx(1.7)
            assert preservation["renewals_last_window"] == 0
        metrics = (await http.get("/metrics")).text
        assert f"aimp_registry_self_preservation {1.0 if enabled else 0.0}" in metrics
