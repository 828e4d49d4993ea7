"""An HTTP stand-in of the Kubernetes API server: the paths the Kubernetes backend uses.

A real aiohttp server on a free port. It keeps Deployments, Services and pods in memory,
records every request (method, path, query, JSON body) and plays the Deployment
controller: after each change the pods match the replica count (new pods start Running
and Ready on node ``n1``; scaling down removes the newest). Tests change a pod's status
with :meth:`StandIn.set_pod_status` to show other states.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

APPS = "/apis/apps/v1/namespaces/{ns}"
CORE = "/api/v1/namespaces/{ns}"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    content_type: str
    authorization: str | None


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def _matches(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj["metadata"].get("labels") or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


@dataclass
class StandIn:
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    logs: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pod_metrics: list[dict[str, Any]] | None = None
    url: str = ""
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _clock: datetime = field(default_factory=lambda: datetime(2025, 1, 1, tzinfo=UTC))

    # -- what tests read ------------------------------------------------------------------

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]

    def set_pod_status(self, name: str, status: dict[str, Any]) -> None:
        self.pods[name]["status"] = status

    # -- the controller ---------------------------------------------------------------------

    def _now(self) -> str:
        self._clock += timedelta(seconds=1)
        return self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def reconcile(self, deployment: str) -> None:
        dep = self.deployments.get(deployment)
        mine = sorted(
            (p for p in self.pods.values() if p["metadata"]["ownerName"] == deployment),
            key=lambda p: p["metadata"]["creationTimestamp"],
        )
        want = dep["spec"]["replicas"] if dep else 0
        for pod in mine[want:]:
            del self.pods[pod["metadata"]["name"]]
        for _ in range(want - len(mine)):
            n = next(self._counter)
            name = f"{deployment}-7d9f{n:02d}-x{n}"
            template = dep["spec"]["template"] if dep else {}
            self.pods[name] = {
                "metadata": {
                    "name": name,
                    "ownerName": deployment,  # stands for ownerReferences
                    "labels": dict(template["metadata"]["labels"]),
                    "creationTimestamp": self._now(),
                },
                "spec": {"nodeName": "n1", **template["spec"]},
                "status": {
                    "phase": "Running",
                    "podIP": f"10.0.0.{n}",
                    "conditions": [
                        {"type": "PodScheduled", "status": "True"},
                        {"type": "Ready", "status": "True"},
                    ],
                    "containerStatuses": [
                        {"name": "server", "restartCount": 0, "ready": True},
                        {"name": "sidecar", "restartCount": 0, "ready": True},
                    ],
                },
            }

    # -- HTTP ---------------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                body,
                request.content_type,
                request.headers.get("Authorization"),
            )
        )
        return body

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_route("*", APPS.format(ns="{ns}") + "/deployments", self.deployments_collection)
        r.add_route("*", APPS.format(ns="{ns}") + "/deployments/{name}", self.deployment_item)
        r.add_route("*", APPS.format(ns="{ns}") + "/deployments/{name}/scale", self.scale)
        r.add_route("*", CORE.format(ns="{ns}") + "/services", self.services_collection)
        r.add_route("*", CORE.format(ns="{ns}") + "/services/{name}", self.service_item)
        r.add_route("GET", CORE.format(ns="{ns}") + "/pods", self.pods_collection)
        r.add_route("DELETE", CORE.format(ns="{ns}") + "/pods/{name}", self.pod_delete)
        r.add_route("GET", CORE.format(ns="{ns}") + "/pods/{name}/log", self.pod_log)
        r.add_route("GET", "/api/v1/nodes", self.node_list)
        r.add_route("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", self.metrics)
        return app

    async def deployments_collection(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if request.method == "GET":
            items = [
                d
                for d in self.deployments.values()
                if _matches(d, request.query.get("labelSelector"))
            ]
            return web.json_response({"kind": "DeploymentList", "items": items})  # fmt: skip
        name = body["metadata"]["name"]
        if name in self.deployments:
            return _status(409, "AlreadyExists", f'deployments.apps "{name}" already exists')
        self.deployments[name] = body
        self.reconcile(name)
        return web.json_response(body, status=201)

    async def deployment_item(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        name = request.match_info["name"]
        if name not in self.deployments:
            return _status(404, "NotFound", f'deployments.apps "{name}" not found')
        if request.method == "PUT":
            self.deployments[name] = body
            self.reconcile(name)
        elif request.method == "DELETE":
            del self.deployments[name]
            self.reconcile(name)
            return web.json_response({"kind": "Status", "status": "Success"})
        return web.json_response(self.deployments[name])

    async def scale(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        name = request.match_info["name"]
        dep = self.deployments.get(name)
        if dep is None:
            return _status(404, "NotFound", f'deployments.apps "{name}" not found')
        if request.method in ("PUT", "PATCH"):
            dep["spec"]["replicas"] = body["spec"]["replicas"]
            self.reconcile(name)
        replicas = dep["spec"]["replicas"]
        return web.json_response(
            {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": name},
                "spec": {"replicas": replicas},
                "status": {"replicas": replicas},
            }
        )

    async def services_collection(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if request.method == "GET":
            return web.json_response({"items": list(self.services.values())})
        name = body["metadata"]["name"]
        if name in self.services:
            return _status(409, "AlreadyExists", f'services "{name}" already exists')
        self.services[name] = body
        return web.json_response(body, status=201)

    async def service_item(self, request: web.Request) -> web.Response:
        await self._record(request)
        name = request.match_info["name"]
        if name not in self.services:
            return _status(404, "NotFound", f'services "{name}" not found')
        if request.method == "DELETE":
            del self.services[name]
            return web.json_response({"kind": "Status", "status": "Success"})
        return web.json_response(self.services[name])

    async def pods_collection(self, request: web.Request) -> web.Response:
        await self._record(request)
        selector = request.query.get("labelSelector")
        items = [p for p in self.pods.values() if _matches(p, selector)]
        return web.json_response({"kind": "PodList", "items": items})

    async def pod_delete(self, request: web.Request) -> web.Response:
        await self._record(request)
        name = request.match_info["name"]
        pod = self.pods.pop(name, None)
        if pod is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        self.reconcile(pod["metadata"]["ownerName"])  # the ReplicaSet replaces it
        return web.json_response(pod)

    async def pod_log(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        name = request.match_info["name"]
        if name not in self.pods:
            return _status(404, "NotFound", f'pods "{name}" not found')
        lines = self.logs.get((name, request.query.get("container", "")), [])
        tail = request.query.get("tailLines")
        if tail is not None:
            lines = lines[-int(tail) :] if int(tail) else []
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        for line in lines:
            await resp.write(f"{line}\n".encode())
        if request.query.get("follow") == "true":
            for i in range(3):  # a live tail: lines written later
                await asyncio.sleep(0.05)
                await resp.write(f"later {i}\n".encode())
        await resp.write_eof()
        return resp

    async def node_list(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"kind": "NodeList", "items": self.nodes})

    async def metrics(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.pod_metrics is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        return web.json_response({"kind": "PodMetricsList", "items": self.pod_metrics})
