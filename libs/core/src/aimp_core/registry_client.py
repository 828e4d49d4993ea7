"""A small async client for Eureka's REST API, used by every aimp reader and writer.

Builds instance documents in Eureka's JSON shape, registers, renews, cancels,
changes status, and reads applications into :class:`Instance` values.

Readers that must learn of changes within a second use the aimp registry's change
stream: :meth:`EurekaClient.watch` yields its events, and :class:`RegistryView`
keeps a live ``{service: (Instance, ...)}`` view, reconnecting with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

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
        self.timeout_s = timeout_s
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

    async def watch(
        self, last_event_id: str | None = None, *, read_timeout_s: float = 35.0
    ) -> AsyncIterator[RegistryEvent]:
        """Events of the registry's change stream (``GET /eureka/stream``), as they come.

        The first event is a snapshot, unless ``last_event_id`` (a previous event's
        ``event_id``) lets the registry send only the changes missed since. Ends when
        the registry closes the stream; raises ``httpx.HTTPError`` when it fails or
        is silent for ``read_timeout_s`` (the registry sends a heartbeat every 10 s).
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self.timeout_s, read=read_timeout_s)
        url = f"{self.base_url}/stream"
        async with self._http.stream("GET", url, headers=headers, timeout=timeout) as resp:
            resp.raise_for_status()
            decoder = _SseDecoder()
            async for line in resp.aiter_lines():
                frame = decoder.feed(line)
                if frame is not None and (event := parse_registry_event(*frame)) is not None:
                    yield event


# -- the change stream ------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryEvent:
    """One event of the change stream.

    ``kind`` is ``"snapshot"`` (``instances`` holds the whole registry) or ``"change"``
    (``action`` is ADDED, MODIFIED or DELETED and ``instance`` the instance after it).
    ``event_id`` resumes the stream after this event (:meth:`EurekaClient.watch`).
    """

    kind: str
    version: int
    event_id: str | None
    instances: tuple[Instance, ...] = ()
    action: str | None = None
    instance: Instance | None = None


class _SseDecoder:
    """Server-sent events framing (WHATWG): lines in, (event, data, last id) out."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self.last_id: str | None = None

    def feed(self, line: str) -> tuple[str, str, str | None] | None:
        if line == "":
            event, data = self._event or "message", self._data
            self._event, self._data = "", []
            return (event, "\n".join(data), self.last_id) if data else None
        if line.startswith(":"):
            return None  # a comment: the registry's heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None


def parse_registry_event(event: str, data: str, event_id: str | None) -> RegistryEvent | None:
    """A stream event as a :class:`RegistryEvent`; None for event types it does not know."""
    if event not in ("snapshot", "change"):
        return None
    body = json.loads(data)
    version = int(body.get("version", 0))
    if event == "snapshot":
        return RegistryEvent("snapshot", version, event_id, tuple(parse_applications(body)))
    return RegistryEvent(
        "change",
        version,
        event_id,
        action=str(body.get("action", "MODIFIED")),
        instance=parse_instance(body.get("instance") or {}),
    )


class RegistryView:
    """A live ``{service: (Instance, ...)}`` view of the registry, every status included.

    :meth:`run` follows the change stream forever: it applies the snapshot and each
    change, and on any failure reconnects with exponential backoff (with jitter),
    resuming from the last event it saw. ``services`` is replaced, never mutated, so
    a reader can keep the mapping it got. ``on_change`` is called after each event.
    """

    def __init__(
        self,
        client: EurekaClient,
        *,
        backoff_min_s: float = 0.05,
        backoff_max_s: float = 5.0,
        read_timeout_s: float = 35.0,
        on_change: Callable[[RegistryView], None] | None = None,
    ) -> None:
        self.client = client
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.read_timeout_s = read_timeout_s
        self.on_change = on_change
        self.version: int | None = None
        self.last_event_id: str | None = None
        self.connected = False
        self.ready = asyncio.Event()
        self._apps: dict[str, dict[str, Instance]] = {}
        self._services: Mapping[str, tuple[Instance, ...]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def services(self) -> Mapping[str, tuple[Instance, ...]]:
        """Instances by service name (lower case), in registration order."""
        return self._services

    def instances(self) -> list[Instance]:
        return [i for items in self._services.values() for i in items]

    def apply(self, event: RegistryEvent) -> None:
        """Bring the view up to ``event``."""
        if event.kind == "snapshot":
            self._apps = {}
            for inst in event.instances:
                self._apps.setdefault(inst.app, {})[inst.instance_id] = inst
            self._services = {
                app.lower(): tuple(items.values()) for app, items in self._apps.items()
            }
        elif event.instance is not None:
            inst = event.instance
            items = self._apps.setdefault(inst.app, {})
            if event.action == "DELETED":
                items.pop(inst.instance_id, None)
            else:
                items[inst.instance_id] = inst
            services = dict(self._services)
            if items:
                services[inst.service] = tuple(items.values())
            else:
                del self._apps[inst.app]
                services.pop(inst.service, None)
            self._services = services
        self.version = event.version
        self.last_event_id = event.event_id or self.last_event_id
        if self.on_change is not None:
            self.on_change(self)

    async def run(self) -> None:
        """Follow the stream until cancelled."""
        delay = self.backoff_min_s
        while True:
            try:
                async for event in self.client.watch(
                    self.last_event_id, read_timeout_s=self.read_timeout_s
                ):
                    self.apply(event)
                    if not self.connected:
                        self.connected = True
                        log.info("following the registry's change stream")
                    self.ready.set()
                    delay = self.backoff_min_s
            except (httpx.HTTPError, httpx.StreamError, ValueError, KeyError, TypeError) as exc:
                if self.connected:
                    log.warning(
                        "registry change stream lost; reconnecting: %s",
                        f"{type(exc).__name__}: {exc}"[:300],
                    )
            self.connected = False
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff_max_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="registry-view")

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait for the first snapshot (raises TimeoutError)."""
        await asyncio.wait_for(self.ready.wait(), timeout_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
