"""The Kubernetes backend against an HTTP stand-in of the API server (k8s_standin.py).

Each test drives the real backend and the official client over HTTP; the assertions are
on the requests the stand-in received (method, path, body) and bodies are validated
with kubernetes-validate against the newest Kubernetes it knows and 1.33.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from aiohttp import web

from aimp_core.errors import NotFound, ServiceUnavailable
from aimp_core.net import free_port
from aimp_deploy_control.backend import PodSpec, Resources, Toleration
from aimp_deploy_control.k8s_backend import KubernetesBackend
from aimp_deploy_control.k8s_client import KubernetesError
from aimp_deploy_control.k8s_settings import KubernetesSettings
from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.settings import DeployControlSettings

from .k8s_standin import StandIn

NS = "aimp"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
SERVICES = f"/api/v1/namespaces/{NS}/services"
VERSIONS = (kubernetes_validate.latest_version(), "1.33.0")


def valid(doc: dict[str, Any]) -> dict[str, Any]:
    for version in VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)
    return doc


def spec(replica: int = 0, **kw: Any) -> PodSpec:
    return PodSpec("iris", replica, "/app/models/iris/model.joblib", "sklearn", **kw)


def make_backend(url: str, tmp_path: Path, **k8s: Any) -> KubernetesBackend:
    settings = DeployControlSettings(home=tmp_path)
    k8s_settings = KubernetesSettings(
        namespace=NS,
        k8s_api_url=url,
        k8s_token="test-token",
        k8s_poll_interval_s=3600,  # tests refresh explicitly
        k8s_timeout_s=2,
        **k8s,
    )
    return KubernetesBackend(settings, k8s_settings)


@pytest.fixture
async def backend(standin: StandIn, tmp_path: Path) -> AsyncIterator[KubernetesBackend]:
    b = make_backend(standin.url, tmp_path)
    await b.start()
    yield b
    await b.close()


async def test_first_pod_creates_a_valid_deployment_and_service(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """Starting replica 0 POSTs a schema-valid Deployment and Service, and the pod shows RUNNING."""
    info = await backend.start_pod(spec())
    posts = [(r.path, r.body) for r in standin.writes() if r.method == "POST"]
    assert [p for p, _ in posts] == [DEPLOYMENTS, SERVICES]
    dep, svc = valid(posts[0][1]), valid(posts[1][1])
    assert dep["metadata"]["name"] == svc["metadata"]["name"] == "iris-r1"
    assert dep["spec"]["replicas"] == 1
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["aimp.io/service"] == "iris" and labels["aimp.io/revision"] == "1"
    assert svc["spec"]["selector"].items() <= labels.items()
    assert info.state == PodState.RUNNING and info.node == "n1"
    assert info.url.startswith("http://10.0.0.") and info.url.endswith(":8100")
    # Every call carried the configured token.
    assert {r.authorization for r in standin.requests} == {"Bearer test-token"}


async def test_pod_template_runs_server_and_sidecar_with_readiness_on_readyz(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """The pod has the server (model file in its args) and the sidecar probed on /readyz."""
    await backend.start_pod(spec())
    pod = standin.deployments["iris-r1"]["spec"]["template"]["spec"]
    server, sidecar = pod["containers"]
    assert server["image"] == "aimp/triton-pod:0.1.0"
    assert "/app/models/iris/model.joblib" in server["args"]
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["AIMP_SIDECAR_SERVICE"]["value"] == "iris"
    assert env["AIMP_SIDECAR_ADVERTISED_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


async def test_scaling_up_and_down_uses_the_scale_subresource(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """More replicas PUT a valid Scale to the scale subresource; so does stopping the top one."""
    await backend.start_pod(spec(0))
    await backend.start_pod(spec(1))
    await backend.start_pod(spec(2))
    await backend.stop_pod("iris-2")
    scales = [r for r in standin.writes() if r.path == f"{DEPLOYMENTS}/iris-r1/scale"]
    assert [r.method for r in scales] == ["PUT", "PUT", "PUT"]
    assert [valid(r.body)["spec"]["replicas"] for r in scales] == [2, 3, 2]
    assert [p.replica for p in backend.pods("iris")] == [0, 1]
    assert len(standin.pods) == 2


async def test_a_changed_spec_replaces_the_deployment_keeping_its_replicas(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """A new model file or resources PUT a valid Deployment with the replicas it had."""
    await backend.start_pod(spec(0))
    await backend.start_pod(spec(1))
    changed = PodSpec(
        "iris", 0, "/app/models/iris/v2.joblib", "sklearn", resources=Resources(cpu=2)
    )
    await backend.start_pod(changed)
    (put,) = [r for r in standin.writes() if r.path == f"{DEPLOYMENTS}/iris-r1"]
    assert put.method == "PUT"
    body = valid(put.body)
    assert body["spec"]["replicas"] == 2
    assert "/app/models/iris/v2.joblib" in body["spec"]["template"]["spec"]["containers"][0]["args"]
    # The same spec again changes nothing.
    before = len(standin.writes())
    await backend.start_pod(changed)
    assert len(standin.writes()) == before


async def test_remove_deletes_the_deployment_and_its_service(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """remove() DELETEs the Deployment (background propagation) and the Service."""
    await backend.start_pod(spec(0))
    await backend.remove("iris")
    deletes = [r for r in standin.writes() if r.method == "DELETE"]
    assert [r.path for r in deletes] == [f"{DEPLOYMENTS}/iris-r1", f"{SERVICES}/iris-r1"]
    assert deletes[0].body["propagationPolicy"] == "Background"
    assert not standin.deployments and not standin.services and not standin.pods
    assert backend.pods("iris") == []


async def test_remove_after_a_restart_finds_the_objects_by_label(
    standin: StandIn, backend: KubernetesBackend, tmp_path: Path
) -> None:
    """A fresh backend that never saw the deployment still deletes it (found by its labels)."""
    await backend.start_pod(spec(0))
    fresh = make_backend(standin.url, tmp_path)
    await fresh.remove("iris")
    await fresh.close()
    assert not standin.deployments and not standin.services


async def test_stopping_a_lower_replica_deletes_its_pod_and_the_slot_is_refilled(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """Stopping replica 0 of 2 deletes that pod; its replacement becomes replica 0."""
    await backend.start_pod(spec(0))
    await backend.start_pod(spec(1))
    before = {p.replica: p.backend_name for p in backend.pods("iris")}
    await backend.stop_pod("iris-0")
    (delete,) = [r for r in standin.writes() if r.method == "DELETE"]
    assert delete.path == f"/api/v1/namespaces/{NS}/pods/{before[0]}"
    after = {p.replica: p.backend_name for p in backend.pods("iris")}
    assert after[1] == before[1]
    assert after[0] not in (None, before[0])


async def test_a_restarted_backend_sees_existing_pods_without_writing(
    standin: StandIn, backend: KubernetesBackend, tmp_path: Path
) -> None:
    """After deploy-control restarts, start() lists what runs; the same spec writes nothing."""
    await backend.start_pod(spec(0))
    await backend.start_pod(spec(1))
    fresh = make_backend(standin.url, tmp_path)
    await fresh.start()
    before = len(standin.writes())
    assert [p.state for p in fresh.pods("iris")] == [PodState.RUNNING, PodState.RUNNING]
    await fresh.start_pod(spec(0))
    assert len(standin.writes()) == before
    await fresh.close()


async def test_pod_states_come_from_kubernetes_with_its_reasons(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """A crash-looping pod is CRASHED and an unschedulable one PENDING, each with the reason."""
    await backend.start_pod(spec(0))
    await backend.start_pod(spec(1))
    first, second = (p.backend_name for p in backend.pods("iris"))
    assert first and second
    standin.set_pod_status(
        first,
        {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "server",
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                    "lastState": {"terminated": {"exitCode": 1}},
                }
            ],
        },
    )
    standin.pods[second]["spec"].pop("nodeName")
    standin.set_pod_status(
        second,
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    )
    await backend.refresh()
    crashed, pending = backend.pods("iris")
    assert crashed.state == PodState.CRASHED and crashed.restarts == 4
    assert crashed.last_error is not None and "CrashLoopBackOff" in crashed.last_error
    assert pending.state == PodState.PENDING
    assert pending.last_error is not None and "Insufficient nvidia.com/gpu" in pending.last_error


async def test_gpu_share_node_selector_and_tolerations_reach_the_pod(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """A GPU-memory share, node selector and toleration appear in the valid Deployment."""
    resources = Resources(
        cpu=1.5,
        memory_mib=2048,
        gpu_mem_mib=3000,
        node_selector=(("gpu", "a10"),),
        tolerations=(Toleration(key="gpu", operator="Exists", effect="NoSchedule"),),
    )
    await backend.start_pod(spec(0, resources=resources))
    (post,) = [r for r in standin.writes() if r.path == DEPLOYMENTS]
    pod = valid(post.body)["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["resources"]["limits"] == {
        "cpu": "1500m",
        "memory": "2048Mi",
        "aliyun.com/gpu-mem": "3",  # GiB, rounded up
    }
    assert pod["nodeSelector"] == {"gpu": "a10"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]


async def test_logs_tail_and_follow_read_the_pod_log_path(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """Logs read /api/v1/.../pods/{pod}/log with tailLines, and follow streams later lines."""
    await backend.start_pod(spec(0))
    (pod,) = backend.pods("iris")
    assert pod.backend_name
    standin.logs[(pod.backend_name, "server")] = ["one", "two", "three"]
    tail = b"".join([c async for c in backend.logs("iris-0", tail_lines=2)])
    assert tail == b"two\nthree\n"
    live = b"".join([c async for c in backend.logs("iris-0", tail_lines=1, follow=True)])
    assert live == b"three\nlater 0\nlater 1\nlater 2\n"
    reads = [r for r in standin.requests if r.path.endswith("/log")]
    assert reads[0].path == f"/api/v1/namespaces/{NS}/pods/{pod.backend_name}/log"
    assert reads[0].query == {"container": "server", "tailLines": "2"}
    assert reads[1].query["follow"] == "true"
    with pytest.raises(NotFound):
        [c async for c in backend.logs("iris-7")]


async def test_an_unreachable_api_server_is_a_503_that_names_it(tmp_path: Path) -> None:
    """With nothing listening, a start is refused with 503 naming the API server's address."""
    url = f"http://127.0.0.1:{free_port()}"
    b = make_backend(url, tmp_path)
    await b.start()  # logs the failure, keeps trying in the background
    with pytest.raises(ServiceUnavailable) as caught:
        await b.start_pod(spec(0))
    assert url in caught.value.detail
    await b.close()


async def test_a_refusal_by_the_api_server_carries_its_message(tmp_path: Path) -> None:
    """A 403 from the API server becomes a 502 with its message and the RBAC hint."""

    async def forbidden(_request: web.Request) -> web.Response:
        return web.json_response(
            {"kind": "Status", "message": "deployments is forbidden"}, status=403
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forbidden)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    b = make_backend(f"http://127.0.0.1:{port}", tmp_path)
    try:
        with pytest.raises(KubernetesError) as caught:
            await b.start_pod(spec(0))
    finally:
        await b.close()
        await runner.cleanup()
    assert caught.value.status == 502 and caught.value.api_status == 403
    assert "deployments is forbidden" in caught.value.detail
    assert "rbac.yaml" in caught.value.detail


async def test_each_revision_has_its_own_deployment_scaled_and_removed_apart(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """Adding r2 POSTs a second valid Deployment and Service; pods are listed with their
    revision; scaling r1 to 0 goes to r1's scale subresource only; remove deletes both."""
    await backend.start_pod(spec(0, revision="r1"))
    await backend.start_pod(spec(1, revision="r1"))
    await backend.start_pod(spec(0, revision="r2"))
    posts = [r for r in standin.writes() if r.method == "POST"]
    assert [r.path for r in posts] == [DEPLOYMENTS, SERVICES, DEPLOYMENTS, SERVICES]
    r2_dep, r2_svc = valid(posts[2].body), valid(posts[3].body)
    assert r2_dep["metadata"]["name"] == r2_svc["metadata"]["name"] == "iris-r2"
    assert r2_svc["spec"]["selector"]["aimp.io/revision"] == "r2"
    assert sorted(standin.deployments) == ["iris-r1", "iris-r2"]
    listed = [(p.pod_id, p.revision, p.replica) for p in backend.pods("iris")]
    assert listed == [("iris-0", "r1", 0), ("iris-1", "r1", 1), ("iris-r2-0", "r2", 0)]
    r2_pod = next(p for p in backend.pods("iris") if p.revision == "r2")
    assert r2_pod.backend_name is not None and r2_pod.backend_name.startswith("iris-r2-")

    before = len(standin.writes())
    await backend.stop_pod("iris-1")
    await backend.stop_pod("iris-0")
    scales = standin.writes()[before:]
    assert [(r.method, r.path) for r in scales] == [("PUT", f"{DEPLOYMENTS}/iris-r1/scale")] * 2
    assert [valid(r.body)["spec"]["replicas"] for r in scales] == [1, 0]
    assert standin.deployments["iris-r1"]["spec"]["replicas"] == 0  # kept for a rollback
    assert [p.pod_id for p in backend.pods("iris")] == ["iris-r2-0"]

    await backend.remove("iris")
    deletes = [r.path for r in standin.writes() if r.method == "DELETE"]
    assert deletes == [
        f"{DEPLOYMENTS}/iris-r1",
        f"{SERVICES}/iris-r1",
        f"{DEPLOYMENTS}/iris-r2",
        f"{SERVICES}/iris-r2",
    ]
    assert not standin.deployments and not standin.services and backend.pods() == []


async def test_a_restarted_backend_sees_every_revision_and_reads_its_logs(
    standin: StandIn, backend: KubernetesBackend, tmp_path: Path
) -> None:
    """A fresh backend lists both revisions' pods from the cluster and finds r2's pod log."""
    await backend.start_pod(spec(0, revision="r1"))
    await backend.start_pod(spec(0, revision="r2"))
    await backend.start_pod(spec(1, revision="r2"))
    fresh = make_backend(standin.url, tmp_path)
    await fresh.start()
    try:
        assert [p.pod_id for p in fresh.pods("iris")] == ["iris-0", "iris-r2-0", "iris-r2-1"]
        pod = fresh.pods("iris")[2]
        assert pod.backend_name is not None
        standin.logs[(pod.backend_name, "server")] = ["r2 says hi"]
        assert b"".join([c async for c in fresh.logs("iris-r2-1")]) == b"r2 says hi\n"
        before = len(standin.writes())
        await fresh.stop_pod("iris-r2-1")
        (put,) = standin.writes()[before:]
        assert put.path == f"{DEPLOYMENTS}/iris-r2/scale" and put.body["spec"]["replicas"] == 1
    finally:
        await fresh.close()


async def test_concurrency_and_env_reach_the_sidecar_and_the_server(
    standin: StandIn, backend: KubernetesBackend
) -> None:
    """A revision's concurrency and queue size are sidecar settings and its env the server's,
    in a valid Deployment; a revision without them has no server env at all."""
    await backend.start_pod(
        spec(0, revision="r1", concurrency=2, queue_size=0, env=(("FOO", "bar"), ("N", "1")))
    )
    await backend.start_pod(spec(0, revision="r2"))
    posted = [r.body for r in standin.writes() if r.path == DEPLOYMENTS]
    by_name = {body["metadata"]["name"]: body for body in posted}
    server, sidecar = valid(by_name["iris-r1"])["spec"]["template"]["spec"]["containers"]
    assert server["env"] == [{"name": "FOO", "value": "bar"}, {"name": "N", "value": "1"}]
    sidecar_env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert sidecar_env["AIMP_SIDECAR_CONCURRENCY_LIMIT"] == "2"
    assert sidecar_env["AIMP_SIDECAR_QUEUE_SIZE"] == "0"
    plain_server, plain_sidecar = valid(by_name["iris-r2"])["spec"]["template"]["spec"][
        "containers"
    ]
    assert "env" not in plain_server
    assert not {e["name"] for e in plain_sidecar["env"]} & {
        "AIMP_SIDECAR_CONCURRENCY_LIMIT",
        "AIMP_SIDECAR_QUEUE_SIZE",
    }
