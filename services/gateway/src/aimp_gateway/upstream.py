"""The one pooled HTTP client the gateway forwards calls with (aiohttp, keep-alive).

Bodies pass byte-exact: no decompression, no cookie jar shared between
callers, no redirects followed, no headers invented beyond what HTTP needs.

Small answers with a ``Content-Length`` are read whole (one read, the fast
path). Answers that are streams by nature are handed back unread as an
:class:`UpstreamStream`: server-sent events, bodies without a length (chunked
or closed-delimited), and bodies larger than ``stream_threshold_bytes``. The
total timeout covers the call up to the whole buffered body, or up to the
response head for a stream; a stream then only has to keep moving (at most
``stream_idle_timeout_s`` between chunks), since a token stream may run for
minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import AsyncIterator
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


class UpstreamStream:
    """An answer's body still arriving from the pod: iterate :meth:`chunks`, then :meth:`close`.

    A break or a stall (``idle_timeout_s`` without a byte) raises
    :class:`UpstreamBroken` or :class:`UpstreamTimeout` from the iteration.
    """

    __slots__ = ("_done", "_origin", "_resp", "idle_timeout_s")

    def __init__(self, resp: aiohttp.ClientResponse, *, idle_timeout_s: float, origin: str) -> None:
        self._resp = resp
        self._origin = origin
        self._done = False
        self.idle_timeout_s = idle_timeout_s

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive (never an empty one)."""
        content = self._resp.content
        try:
            while True:
                async with asyncio.timeout(self.idle_timeout_s):
                    chunk = await content.readany()
                if not chunk:
                    self._done = True
                    return
                yield chunk
        except TimeoutError:
            raise UpstreamTimeout(
                f"the service instance at {self._origin} sent nothing for "
                f"{self.idle_timeout_s:g} s in the middle of a streamed answer"
            ) from None
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            raise UpstreamBroken(
                f"the service instance at {self._origin} broke off a streamed answer "
                f"({type(exc).__name__})"
            ) from None

    def close(self) -> None:
        """Give the connection back to the pool if the body was read to its end, else drop it.

        Safe to call more than once, and while :meth:`chunks` waits (it then ends in
        :class:`UpstreamBroken`)."""
        if self._done:
            self._resp.release()
        else:
            self._resp.close()


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    raw_headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    upstream_ms: float
    #: The body still to come, for streamed answers (``body`` is then empty).
    stream: UpstreamStream | None = None


#: Statuses that never have a body (RFC 9110 §6.4.1).
_NO_BODY = frozenset({204, 304})


def is_stream(method: str, resp: aiohttp.ClientResponse, threshold_bytes: int) -> bool:
    """Should this answer be passed on as it arrives rather than read whole first?"""
    if method == "HEAD" or resp.status in _NO_BODY or resp.status < 200:
        return False
    if resp.content_type == "text/event-stream":
        return True
    length = resp.content_length
    return length is None or length > threshold_bytes


class Upstream:
    """Forwards one request to one pod and reads the whole answer."""

    def __init__(
        self,
        *,
        connect_timeout_s: float,
        total_timeout_s: float,
        max_connections: int,
        keepalive_s: float = 4.0,
        stream_threshold_bytes: int = 1024 * 1024,
        stream_idle_timeout_s: float = 60.0,
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.total_timeout_s = total_timeout_s
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self.stream_threshold_bytes = stream_threshold_bytes
        self.stream_idle_timeout_s = stream_idle_timeout_s
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
            # The total deadline is applied per call in forward(): aiohttp's own would
            # also cut a streamed body that is still flowing.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
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
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        timeout_s: float | None = None,
    ) -> UpstreamResponse:
        """Send the request; on failure :class:`ConnectFailed` (never sent),
        :class:`UpstreamBroken` (sent, no whole answer) or :class:`UpstreamTimeout`.

        ``timeout_s`` (default: the total timeout) bounds the call up to the whole
        buffered body, or up to the head of a streamed answer. A streamed answer
        (``stream`` set) must be closed by the caller.
        """
        assert self._session is not None, "Upstream.start() was not awaited"
        total_s = self.total_timeout_s if timeout_s is None else timeout_s
        start = time.perf_counter()
        try:
            async with asyncio.timeout(total_s):
                resp = await self._session.request(
                    method,
                    URL(url, encoded=True),
                    headers=headers,
                    data=body if body else None,
                    allow_redirects=False,
                )
                if is_stream(method, resp, self.stream_threshold_bytes):
                    stream = UpstreamStream(
                        resp, idle_timeout_s=self.stream_idle_timeout_s, origin=_origin(url)
                    )
                    ms = (time.perf_counter() - start) * 1000.0
                    return UpstreamResponse(resp.status, resp.raw_headers, b"", ms, stream)
                try:
                    payload = await resp.read()
                finally:
                    resp.release()
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
                f"the service instance at {_origin(url)} did not answer within {total_s:g} s"
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
