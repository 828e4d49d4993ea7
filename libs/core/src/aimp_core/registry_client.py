"""A small async client for Eureka's REST API, used by every aimp reader and writer.

Builds instance documents in Eureka's JSON shape, registers, renews, cancels,
changes status, and reads applications into :class:`Instance` values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

JSON = {"Accept": "application/json", "Content-Type": "application/json"}

#: Instance metadata keys aimp uses (DESIGN.md).
META_REVISION = "aimp.revision"
META_RUNTIME = "aimp.runtime"
META_MODEL = "aimp.model"
META_WEIGHT = "aimp.weight"
META_ZONE = "aimp.zone"
META_GPU_MEM = "aimp.gpu_mem_mib"


def app_name(service: str) -> str:
    """Eureka's convention: the app name is the service name in upper case."""
    return service.upper()


@dataclass(frozen=True)
class Instance:
    """One registered instance as readers need it."""

    instance_id: str
    app: str
    ip: str
    port: int
    status: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    @property
    def service(self) -> str:
        return self.app.lower()


def instance_document(
    *,
    app: str,
    instance_id: str,
    ip: str,
    port: int,
    status: str = "UP",
    metadata: dict[str, str] | None = None,
    renewal_interval_s: int = 30,
    lease_duration_s: int = 90,
) -> dict[str, Any]:
    """The JSON body of ``POST /eureka/apps/{APP}``."""
    base = f"http://{ip}:{port}"
    now = str(int(time.time() * 1000))
    return {
        "instance": {
            "instanceId": instance_id,
            "hostName": ip,
            "app": app.upper(),
            "ipAddr": ip,
            "vipAddress": app.lower(),
            "secureVipAddress": app.lower(),
            "status": status,
            "overriddenstatus": "UNKNOWN",
            "port": {"$": port, "@enabled": "true"},
            "securePort": {"$": 443, "@enabled": "false"},
            "homePageUrl": f"{base}/",
            "statusPageUrl": f"{base}/healthz",
            "healthCheckUrl": f"{base}/readyz",
            "dataCenterInfo": {
                "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
                "name": "MyOwn",
            },
            "leaseInfo": {
                "renewalIntervalInSecs": renewal_interval_s,
                "durationInSecs": lease_duration_s,
            },
            "metadata": dict(metadata or {}),
            "lastDirtyTimestamp": now,
        }
    }


def parse_instance(doc: dict[str, Any]) -> Instance:
    port = doc.get("port", 0)
    port_value = port.get("$", 0) if isinstance(port, dict) else port
    meta = doc.get("metadata") or {}
    return Instance(
        instance_id=str(doc.get("instanceId") or doc.get("hostName")),
        app=str(doc.get("app", "")).upper(),
        ip=str(doc.get("ipAddr") or doc.get("hostName")),
        port=int(port_value),
        status=str(doc.get("status", "UNKNOWN")),
        metadata={str(k): str(v) for k, v in meta.items() if k != "@class"},
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def parse_applications(body: dict[str, Any]) -> list[Instance]:
    """Instances from a ``GET /eureka/apps`` JSON body."""
    apps = _as_list(body.get("applications", {}).get("application"))
    return [parse_instance(i) for a in apps for i in _as_list(a.get("instance"))]


class EurekaClient:
    """Registration and discovery against one Eureka-compatible registry."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout_s, headers=JSON)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def register(self, document: dict[str, Any]) -> None:
        app = document["instance"]["app"]
        resp = await self._http.post(f"{self.base_url}/apps/{app}", json=document)
        resp.raise_for_status()

    async def renew(self, app: str, instance_id: str) -> bool:
        """Send a heartbeat; False means the registry no longer knows the instance."""
        resp = await self._http.put(f"{self.base_url}/apps/{app.upper()}/{instance_id}")
        if resp.status_code == 404:
            return False
        resp.raise_for_status()
        return True

    async def set_status(self, app: str, instance_id: str, status: str) -> None:
        resp = await self._http.put(
            f"{self.base_url}/apps/{app.upper()}/{instance_id}/status", params={"value": status}
        )
        resp.raise_for_status()

    async def cancel(self, app: str, instance_id: str) -> None:
        resp = await self._http.delete(f"{self.base_url}/apps/{app.upper()}/{instance_id}")
        if resp.status_code not in (200, 404):
            resp.raise_for_status()

    async def applications(self) -> list[Instance]:
        resp = await self._http.get(f"{self.base_url}/apps")
        resp.raise_for_status()
        return parse_applications(resp.json())

    async def ping(self) -> None:
        resp = await self._http.get(f"{self.base_url}/apps")
        resp.raise_for_status()
