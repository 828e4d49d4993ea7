"""Writes a service's traffic split to the gateway's config center (an HTTP adapter).

deploy-control signs in at the gateway as its own OAuth2 client (client credentials
grant, role ``admin:config``), keeps the token until shortly before it expires, reads
the service's configuration, replaces its ``revisions`` and writes it back with
``If-Match`` (re-reading on 412). Every call has a timeout; an unreachable or refusing
gateway is a 502/503 that names it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from aimp_core.errors import BadGateway, ServiceUnavailable
from aimp_deploy_control.revision_settings import RevisionSettings

log = logging.getLogger(__name__)

#: Fields of a service's configuration that the gateway adds on reads (not writable).
_READ_ONLY = ("service", "version")


@dataclass(frozen=True)
class Applied:
    """How a config change was known to be in force before old pods were stopped."""

    version: int
    #: True when this gateway reported it applied (``applied_version``); the wait for
    #: the others is the config center's 1 s guarantee plus margin either way.
    confirmed_here: bool
    waited_s: float

    def describe(self) -> str:
        here = "applied by the gateway" if self.confirmed_here else "not confirmed by the gateway"
        return (
            f"config version {self.version} {here}; waited {self.waited_s:.1f} s for every "
            "gateway (the config center applies changes within 1 s)"
        )


class GatewayTraffic:
    def __init__(
        self,
        settings: RevisionSettings,
        gateway_url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.gateway_url = gateway_url.rstrip("/")
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=self.gateway_url, timeout=settings.gateway_timeout_s, transport=transport
        )
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- writing a split --------------------------------------------------------------------

    async def set_split(self, service: str, split: Mapping[str, int]) -> int:
        """Make the gateway split ``service``'s calls by ``split`` (percent by revision;
        an empty split sends calls to every instance). Returns the config version."""
        revisions = [{"revision": name, "weight": weight} for name, weight in split.items()]
        for _ in range(self.settings.config_write_attempts):
            current, etag = await self._read_service(service)
            body = {k: v for k, v in current.items() if k not in _READ_ONLY}
            body["revisions"] = revisions
            headers = {"If-Match": etag} if etag else {}
            resp = await self._call(
                "PUT",
                f"/admin/config/services/{service}",
                json=body,
                headers=headers,
                params={"comment": "traffic split set by deploy-control"},
            )
            if resp.status_code == 412:
                log.info("config changed meanwhile; re-reading", extra={"service": service})
                continue
            self._check(resp, f"writing the traffic split of {service!r}")
            version = int(resp.json()["version"])
            log.info(
                "traffic split written",
                extra={"service": service, "split": dict(split), "version": version},
            )
            return version
        raise ServiceUnavailable(
            f"the gateway at {self.gateway_url} kept changing (412) across "
            f"{self.settings.config_write_attempts} attempts to write {service!r}'s traffic "
            "split; try again"
        )

    async def wait_applied(self, version: int, written_at: float) -> Applied:
        """Wait until ``version`` is in force: this gateway's applied version reaches it and
        the config center's guarantee for the others has passed since ``written_at``."""
        deadline = written_at + self.settings.config_apply_wait_s
        confirmed = False
        while True:
            if not confirmed:
                confirmed = await self._applied_here(version)
            now = self._clock()
            if now >= deadline and (confirmed or now >= deadline + self.settings.gateway_timeout_s):
                return Applied(version, confirmed, now - written_at)
            await asyncio.sleep(min(0.1, max(0.01, deadline - now)))

    # -- helpers ------------------------------------------------------------------------------

    async def _applied_here(self, version: int) -> bool:
        try:
            resp = await self._call("GET", "/admin/config")
        except (BadGateway, ServiceUnavailable):
            return False
        return resp.status_code == 200 and int(resp.json().get("applied_version", 0)) >= version

    async def _read_service(self, service: str) -> tuple[dict[str, Any], str | None]:
        resp = await self._call("GET", f"/admin/config/services/{service}")
        if resp.status_code == 404:
            return {}, None  # no configuration yet: the gateway's defaults plus the split
        self._check(resp, f"reading {service!r}'s configuration")
        body: dict[str, Any] = resp.json()
        return body, resp.headers.get("etag")

    async def _call(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        resp: httpx.Response | None = None
        for _ in range(2):  # a 401 means a revoked token or rotated keys: sign in again once
            auth = {**(headers or {}), "Authorization": f"Bearer {await self._get_token()}"}
            try:
                resp = await self._http.request(method, path, headers=auth, **kwargs)
            except httpx.HTTPError as exc:
                raise ServiceUnavailable(
                    f"the gateway at {self.gateway_url} did not answer {method} {path} "
                    f"({type(exc).__name__}); start it (aimp up) or check "
                    "AIMP_DEPLOY_CONTROL_GATEWAY_URL"
                ) from None
            if resp.status_code != 401:
                return resp
            self._token = None
        assert resp is not None
        return resp

    def _check(self, resp: httpx.Response, what: str) -> None:
        if resp.is_success:
            return
        detail = _detail(resp)
        raise BadGateway(
            f"the gateway at {self.gateway_url} refused {what}: {resp.status_code} {detail}"
        )

    async def _get_token(self) -> str:
        async with self._token_lock:
            if self._token is not None and self._clock() < self._token_until:
                return self._token
            s = self.settings
            if not s.client_id or s.client_secret is None:
                raise ServiceUnavailable(
                    "deploy-control has no client at the gateway, so it cannot set traffic "
                    "splits: set AIMP_DEPLOY_CONTROL_CLIENT_ID and "
                    "AIMP_DEPLOY_CONTROL_CLIENT_SECRET (aimp up does) to a client with role "
                    "admin:config"
                )
            try:
                resp = await self._http.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(s.client_id, s.client_secret.get_secret_value()),
                )
            except httpx.HTTPError as exc:
                raise ServiceUnavailable(
                    f"the gateway at {self.gateway_url} did not answer the token request "
                    f"({type(exc).__name__}); start it (aimp up) or check "
                    "AIMP_DEPLOY_CONTROL_GATEWAY_URL"
                ) from None
            if resp.status_code != 200:
                raise BadGateway(
                    f"the gateway at {self.gateway_url} refused deploy-control's client "
                    f"{s.client_id!r}: {resp.status_code} {_detail(resp)}; check "
                    "AIMP_DEPLOY_CONTROL_CLIENT_ID/_SECRET against the gateway's clients"
                )
            body = resp.json()
            self._token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 300))
            self._token_until = self._clock() + max(0.0, lifetime - s.token_refresh_margin_s)
            return self._token


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error_description") or body)[:300]
    return str(body)[:300]
