"""The one pooled HTTP client the gateway forwards calls with (HTTP/1.1 keep-alive).

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

from aimp_core.errors import BadGateway, GatewayTimeout
from aimp_gateway.http1 import Broken, Connection
from aimp_gateway.http1_pool import Pool

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

    __slots__ = ("_conn", "_done", "_origin", "_pool", "idle_timeout_s")

    def __init__(self, pool: Pool, conn: Connection, *, idle_timeout_s: float, origin: str) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self._origin = origin
        self._done = False
        self.idle_timeout_s = idle_timeout_s

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive (never an empty one)."""
        conn = self._conn
        if conn is None:
            raise UpstreamBroken(f"the streamed answer from {self._origin} was closed")
        try:
            while True:
                chunk = conn.next_chunks()
                if chunk is None:
                    self._done = True
                    return
                if chunk:
                    yield chunk
                    continue
                if conn.lost and not conn.complete:
                    raise Broken("closed")
                async with asyncio.timeout(self.idle_timeout_s):
                    await conn.data_waiter()
        except TimeoutError:
            raise UpstreamTimeout(
                f"the service instance at {self._origin} sent nothing for "
                f"{self.idle_timeout_s:g} s in the middle of a streamed answer"
            ) from None
        except Broken:
            raise UpstreamBroken(
                f"the service instance at {self._origin} broke off a streamed answer"
            ) from None

    def close(self) -> None:
        """Give the connection back to the pool if the body was read to its end, else drop it.

        Safe to call more than once, and while :meth:`chunks` waits (it then ends in
        :class:`UpstreamBroken`)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done:
            self._pool.release(conn)
        else:
            self._pool.drop(conn)
            conn.fail_waiting(Broken("closed by the gateway"))


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    raw_headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]]
    body: bytes
    upstream_ms: float
    #: The body still to come, for streamed answers (``body`` is then empty).
    stream: UpstreamStream | None = None


#: Statuses that never have a body (RFC 9110 §6.4.1).
_NO_BODY = frozenset({204, 304})
#: Methods whose requests carry a Content-Length even when empty (as aiohttp sends them).
_LENGTH_ALWAYS = frozenset({"POST", "PUT", "PATCH"})


def is_stream(
    method: str, status: int, headers: list[tuple[bytes, bytes]], threshold_bytes: int
) -> bool:
    """Should this answer be passed on as it arrives rather than read whole first?"""
    if method == "HEAD" or status in _NO_BODY or status < 200:
        return False
    length: int | None = None
    chunked = False
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-type":
            if value.split(b";", 1)[0].strip().lower() == b"text/event-stream":
                return True
        elif lname == b"content-length":
            length = int(value) if value.strip().isdigit() else None
        elif lname == b"transfer-encoding":
            chunked = True
    return chunked or length is None or length > threshold_bytes


def _split(url: str) -> tuple[str, int, str, bytes]:
    """(host, port, target, Host header value) of an ``http://host[:port]/target`` URL."""
    if not url.startswith("http://"):
        raise ValueError(f"only http:// upstream URLs are supported, not {_origin(url)!r}")
    rest = url[7:]
    slash = rest.find("/")
    authority, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if authority.startswith("["):  # [v6]:port
        close = authority.index("]")
        host, port_text = authority[1:close], authority[close + 2 :]
    else:
        host, _, port_text = authority.partition(":")
    return host, int(port_text) if port_text else 80, target, authority.encode("latin-1")


class Upstream:
    """Forwards one request to one pod and reads the whole answer (or its head, to stream)."""

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
        self._pool: Pool | None = None

    async def start(self) -> None:
        """Open the connection pool (needs the running event loop)."""
        self._pool = Pool(
            connect_timeout_s=self.connect_timeout_s,
            max_connections=self.max_connections,
            keepalive_s=self.keepalive_s,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

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
        pool = self._pool
        assert pool is not None, "Upstream.start() was not awaited"
        total_s = self.total_timeout_s if timeout_s is None else timeout_s
        start = time.perf_counter()
        host, port, target, authority = _split(url)
        head = _request_head(method, target, authority, headers, body)
        threshold = self.stream_threshold_bytes

        def chooser(status: int, raw: list[tuple[bytes, bytes]]) -> bool:
            return is_stream(method, status, raw, threshold)

        conn: Connection | None = None
        try:
            async with asyncio.timeout(total_s):
                try:
                    conn = await pool.acquire(host, port)
                except TimeoutError:
                    raise ConnectFailed(
                        f"the service instance at {_origin(url)} did not accept a connection "
                        f"within {self.connect_timeout_s:g} s (ConnectionTimeoutError); it may "
                        "be starting or gone, retry shortly",
                        gone=False,
                    ) from None
                except OSError as exc:
                    raise ConnectFailed(
                        f"the service instance at {_origin(url)} did not accept a connection "
                        f"({type(exc).__name__}); it may be starting or gone, retry shortly",
                        gone=exc.errno in _GONE_ERRNOS,
                    ) from None
                await conn.send(head, body, chooser, head_only=method == "HEAD")
        except TimeoutError:
            if conn is not None:
                pool.drop(conn)
            raise UpstreamTimeout(
                f"the service instance at {_origin(url)} did not answer within {total_s:g} s"
            ) from None
        except Broken:
            assert conn is not None
            pool.drop(conn)
            raise UpstreamBroken(
                f"the service instance at {_origin(url)} broke off the call "
                "(ServerDisconnectedError)"
            ) from None
        except BaseException:
            if conn is not None:
                pool.drop(conn)
            raise
        ms = (time.perf_counter() - start) * 1000.0
        if conn.streaming:
            stream = UpstreamStream(
                pool, conn, idle_timeout_s=self.stream_idle_timeout_s, origin=_origin(url)
            )
            return UpstreamResponse(conn.status, conn.headers, b"", ms, stream)
        status, raw_headers, payload = conn.status, conn.headers, conn.body()
        pool.release(conn)
        return UpstreamResponse(status, raw_headers, payload, ms)


def _request_head(
    method: str, target: str, authority: bytes, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    """The request line and headers, with ``Host`` and (when there is a body, or the
    method expects one) ``Content-Length``."""
    lines = [f"{method} {target} HTTP/1.1\r\nHost: ".encode("latin-1"), authority, b"\r\n"]
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    if body or method in _LENGTH_ALWAYS:
        lines.append(b"Content-Length: %d\r\n" % len(body))
    lines.append(b"\r\n")
    return b"".join(lines)


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
