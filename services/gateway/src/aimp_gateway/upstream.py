"""The one pooled HTTP client the gateway forwards calls with (aiohttp, keep-alive).

Bodies pass byte-exact: no decompression, no cookie jar shared between
callers, no redirects followed, no headers invented beyond what HTTP needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from aimp_core.errors import BadGateway, GatewayTimeout

#: Connect errors that mean nothing listens at the address (the pod or its host is gone).
_GONE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


class ConnectFailed(BadGateway):
    """The pod did not accept the connection; the request was never sent (safe to retry).

    ``gone``: refused or unreachable, so nothing listens there (unlike a timeout,
    which an overloaded pod can cause too).
    """

    def __init__(self, detail: str, *, gone: bool) -> None:
        super().__init__(detail)
        self.gone = gone


class UpstreamBroken(BadGateway):
    """The connection broke after the request was sent, before a whole response came."""


class UpstreamTimeout(GatewayTimeout):
    """The pod accepted the request but gave no whole response within the total timeout."""


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    raw_headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    upstream_ms: float


class Upstream:
    """Forwards one request to one pod and reads the whole answer."""

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        total_timeout_s: float,
        max_connections: int,
        keepalive_s: float = 4.0,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.total_timeout_s = total_timeout_s
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pooled session (needs the running event loop)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=0,
                enable_cleanup_closed=True,
                keepalive_timeout=self.keepalive_s,
            ),
            timeout=aiohttp.ClientTimeout(
                total=self.total_timeout_s, sock_connect=self.connect_timeout_s
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trust_env=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> UpstreamResponse:
        """Send the request; on failure :class:`ConnectFailed` (never sent),
        :class:`UpstreamBroken` (sent, no whole answer) or :class:`UpstreamTimeout`."""
        assert self._session is not None, "Upstream.start() was not awaited"
        start = time.perf_counter()
        try:
            async with self._session.request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=body if body else None,
                allow_redirects=False,
            ) as resp:
                payload = await resp.read()
                return UpstreamResponse(
                    resp.status,
                    resp.raw_headers,
                    payload,
                    (time.perf_counter() - start) * 1000.0,
                )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            code = getattr(getattr(exc, "os_error", None), "errno", None)
            raise ConnectFailed(
                f"the service instance at {_origin(url)} did not accept a connection "
                f"({type(exc).__name__}); it may be starting or gone, retry shortly",
                gone=code in _GONE_ERRNOS,
            ) from None
        except TimeoutError:
            raise UpstreamTimeout(
                f"the service instance at {_origin(url)} did not answer within "
                f"{self.total_timeout_s:g} s"
            ) from None
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            raise UpstreamBroken(
                f"the service instance at {_origin(url)} broke off the call ({type(exc).__name__})"
            ) from None


async def tcp_accepts(ip: str, port: int, *, timeout_s: float) -> bool:
    """Does ``ip:port`` accept a TCP connection within ``timeout_s``? (closed at once)"""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _origin(url: str) -> str:
    """Scheme, host and port only: paths and queries may carry caller data."""
    parts = url.split("/", 3)
    return "/".join(parts[:3])
