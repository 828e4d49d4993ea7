"""The inference server behind the sidecar, reached over one pooled aiohttp session."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from aimp_core.errors import BadGateway, GatewayTimeout, ServiceUnavailable

#: On a 503 of ours: the model server refused the connection, so the call was never sent
#: and the gateway may send it to another pod (a POST included).
NOT_SENT_HEADER = "x-aimp-not-sent"


class ServerRefused(ServiceUnavailable):
    """The model server did not accept a connection: the call was not sent."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers[NOT_SENT_HEADER] = "1"


#: Readiness probes are local calls that answer in about a millisecond.
PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Upstream:
    """Forwards calls byte for byte and checks the server's readiness."""

    def __init__(self, base_url: str, *, timeout_s: float, pool_size: int, model: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self.model = model
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.pool_size, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            # Bodies pass through untouched: never decompress, never add default headers.
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Upstream.start() was not called")
        return self._session

    async def forward(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamResponse:
        """Send one call upstream; BadGateway or GatewayTimeout say what went wrong."""
        target = self.base_url + raw_path.decode("latin-1")
        if query:
            target += "?" + query.decode("latin-1")
        try:
            async with self.session.request(
                method,
                URL(target, encoded=True),
                headers=CIMultiDict(headers),
                data=body if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS") else None,
                allow_redirects=False,
            ) as resp:
                payload = await resp.read()
                return UpstreamResponse(resp.status, list(resp.raw_headers), payload)
        except TimeoutError:
            raise GatewayTimeout(
                f"the model server at {self.base_url} did not answer within {self.timeout_s:g} s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise ServerRefused(
                f"the model server at {self.base_url} did not accept a connection "
                f"({type(exc).__name__}); the call was not sent: send it to another pod"
            ) from None
        except aiohttp.ClientConnectionError as exc:
            raise BadGateway(
                f"the model server at {self.base_url} is not reachable ({type(exc).__name__}); "
                "it may be starting or restarting"
            ) from None
        except aiohttp.ClientError as exc:
            raise BadGateway(
                f"the model server at {self.base_url} sent an unusable answer "
                f"({type(exc).__name__})"
            ) from None

    async def ready(self) -> bool:
        """The server and (if named) its model answer ready."""
        paths = ["/v2/health/ready"]
        if self.model:
            paths.append(f"/v2/models/{self.model}/ready")
        try:
            for path in paths:
                async with self.session.get(
                    self.base_url + path, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        return False
        except (TimeoutError, aiohttp.ClientError):
            return False
        return True
