"""The :class:`~aimp_registry_sidecar.registration.Registration` adapter over py-eureka-client.

It uses py-eureka-client's async registry calls (``eureka_basic.register``,
``send_heartbeat``, ``status_update``, ``cancel``) on the sidecar's own event
loop, and plugs an HTTP client into the library's documented hook
(``http_client.set_http_client``).

Why not ``py_eureka_client.eureka_client.EurekaClient.start()`` (0.13.x):

* its heartbeat runs on a ``threading.Timer`` thread with a second event loop
  and ``time.sleep``, shares an ``asyncio.Lock`` across the two loops, ticks in
  whole seconds, cannot be stopped once it has fired, and knows nothing of the
  upstream's readiness;
* its ``register``/``send_heartbeat`` swallow every error (reported only through
  an ``on_error`` callback), so backoff and "the registry forgot us" cannot be told
  apart; its ``stop()`` registers DOWN and cancels, with no OUT_OF_SERVICE + drain.

The library's default HTTP client builds a new ``httpx.AsyncClient`` per call, which
loads the CA bundle synchronously (~20 ms on the loop each time) and closes the
connection; :class:`PooledHttpClient` keeps one keep-alive client with our timeout.
"""

from __future__ import annotations

import email.message
import io
import logging
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass, field

import httpx
from py_eureka_client import eureka_basic, http_client
from py_eureka_client import logger as eureka_logger

from aimp_registry_sidecar.registration import RegistryUnreachable

log = logging.getLogger(__name__)

#: Eureka's "no override" value for ``overriddenstatus``.
NO_OVERRIDE = "UNKNOWN"


@dataclass(frozen=True)
class InstanceInfo:
    """What the registry is told about this pod (everything but the status)."""

    service: str
    instance_id: str
    ip: str
    port: int
    renewal_interval_s: int
    lease_duration_s: int
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def app(self) -> str:
        """Eureka's convention: the app name is the service name in upper case."""
        return self.service.upper()

    @property
    def base_url(self) -> str:
        return f"http://{self.ip}:{self.port}"


def instance_bean(info: InstanceInfo, *, status: str, dirty_ms: int) -> eureka_basic.Instance:
    """py-eureka-client's instance object for one registration."""
    base = info.base_url
    return eureka_basic.Instance(
        instanceId=info.instance_id,
        app=info.app,
        ipAddr=info.ip,
        hostName=info.ip,
        port=eureka_basic.PortWrapper(port=info.port, enabled=True),
        securePort=eureka_basic.PortWrapper(port=443, enabled=False),
        homePageUrl=f"{base}/",
        statusPageUrl=f"{base}/healthz",
        healthCheckUrl=f"{base}/readyz",
        vipAddress=info.service.lower(),
        secureVipAddress=info.service.lower(),
        dataCenterInfo=eureka_basic.DataCenterInfo(),
        status=status,
        overriddenstatus=NO_OVERRIDE,
        leaseInfo=eureka_basic.LeaseInfo(
            renewalIntervalInSecs=info.renewal_interval_s,
            durationInSecs=info.lease_duration_s,
        ),
        metadata=dict(info.metadata),
        lastUpdatedTimestamp=dirty_ms,
        lastDirtyTimestamp=dirty_ms,
    )


def without_credentials(url: str) -> str:
    """``url`` fit for logs: a ``user:password@`` part (Eureka basic auth) is masked."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


class PooledHttpClient(http_client.HttpClient):  # type: ignore[misc]  # untyped library
    """py-eureka-client's HTTP hook: one keep-alive httpx client with our timeout.

    Errors are raised as the library expects (``HTTPError`` for an error status,
    ``URLError`` for no answer). The library's per-call timeout (a fixed 5 s) is
    replaced by ``timeout_s``.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def urlopen(
        self,
        request: str | http_client.HttpRequest | None = None,
        data: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the library's signature; ours applies)
    ) -> http_client.HttpResponse:
        req = http_client.HttpRequest(request) if isinstance(request, str) else request
        if req is None:
            raise urllib.error.URLError("no request given")
        try:
            resp = await self._http.request(
                req.method,
                req.url,
                headers=req.headers,
                content=data if data is not None else req.content,
            )
        except httpx.HTTPError as exc:
            raise urllib.error.URLError(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            headers = email.message.Message()
            for name, value in resp.headers.multi_items():
                headers[name] = value
            raise urllib.error.HTTPError(
                req.url, resp.status_code, resp.reason_phrase, headers, io.BytesIO(resp.content)
            )
        return http_client.HttpResponse(resp)

    async def aclose(self) -> None:
        await self._http.aclose()


class EurekaRegistration:
    """One instance's registration through py-eureka-client, on the caller's event loop."""

    def __init__(self, registry_url: str, info: InstanceInfo, *, timeout_s: float) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.info = info
        self.timeout_s = timeout_s
        self._http: PooledHttpClient | None = None
        self._previous: http_client.HttpClient | None = None
        self._dirty_ms = 0

    @property
    def app(self) -> str:
        return self.info.app

    @property
    def instance_id(self) -> str:
        return self.info.instance_id

    def start(self) -> None:
        """Plug our HTTP client into py-eureka-client (process-wide: one sidecar per process)."""
        # The library logs through its own stdout thread unless given a logger.
        eureka_logger.set_custom_logger(logging.getLogger("py_eureka_client"))
        self._http = PooledHttpClient(self.timeout_s)
        self._previous = http_client.http_client
        http_client.set_http_client(self._http)

    async def aclose(self) -> None:
        if self._http is None:
            return
        if http_client.http_client is self._http and self._previous is not None:
            http_client.set_http_client(self._previous)
        await self._http.aclose()
        self._http = None

    def _next_dirty_ms(self) -> int:
        # Strictly increasing: the registry keeps the document with the newest timestamp.
        self._dirty_ms = max(int(time.time() * 1000), self._dirty_ms + 1)
        return self._dirty_ms

    def _failure(self, what: str, exc: Exception) -> RegistryUnreachable:
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code}"
        else:
            reason = str(getattr(exc, "reason", exc))
        return RegistryUnreachable(
            f"{what} at {without_credentials(self.registry_url)} failed: {reason}"
        )

    async def register(self, status: str) -> None:
        bean = instance_bean(self.info, status=status, dirty_ms=self._next_dirty_ms())
        try:
            await eureka_basic.register(self.registry_url, bean)
        except urllib.error.URLError as exc:
            raise self._failure("register", exc) from None

    async def renew(self, status: str) -> bool:
        try:
            await eureka_basic.send_heartbeat(
                self.registry_url, self.app, self.instance_id, self._dirty_ms, status=status
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise self._failure("heartbeat", exc) from None
        except urllib.error.URLError as exc:
            raise self._failure("heartbeat", exc) from None
        return True

    async def set_status(self, status: str) -> None:
        try:
            await eureka_basic.status_update(
                self.registry_url, self.app, self.instance_id, self._dirty_ms, status
            )
        except urllib.error.URLError as exc:
            raise self._failure(f"status {status}", exc) from None

    async def cancel(self) -> None:
        try:
            await eureka_basic.cancel(self.registry_url, self.app, self.instance_id)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:  # already gone: what we wanted
                raise self._failure("cancel", exc) from None
        except urllib.error.URLError as exc:
            raise self._failure("cancel", exc) from None
