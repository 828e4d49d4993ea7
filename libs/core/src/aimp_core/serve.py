"""Run an app under uvicorn (uvloop, httptools) with a graceful stop on SIGTERM.

uvicorn's httptools protocol puts no bound on a request head (httptools/llhttp
accepts any number of header lines of any length) and no deadline on it (its
keep-alive timer runs only between requests, and the first byte of a request
cancels it), so one client trickling header bytes holds a connection and its
memory for ever (slowloris). :class:`GuardedHttpToolsProtocol` adds what
nginx has: a bound on the head's size and header count (431) and a deadline
for the whole head from the connection's start or the end of the previous
answer (408), both answered with problem+json and a closed connection; and a
bound on concurrent connections and in-flight requests (503 problem+json,
uvicorn's ``limit_concurrency`` answers plain text).
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROBLEM_JSON = b"application/problem+json"
_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


@dataclass(frozen=True)
class ServerLimits:
    """What one client may cost the server before its request reaches the app."""

    #: Request line plus header lines. nginx allows 4 x 8 KiB, Node 16 KiB; 64 KiB
    #: holds any sane set of tokens and cookies and bounds memory per connection.
    max_head_bytes: int = 64 * 1024
    #: Header lines per request (Apache and Go allow 100): more is an attack or a bug.
    max_header_count: int = 100
    #: The whole head must arrive within this from the connection's start (or the
    #: previous answer's end): nginx's client_header_timeout is 60 s; 10 s is ample
    #: for a head of a few KiB and frees slowloris connections sooner.
    head_timeout_s: float = 10.0
    #: Open connections plus in-flight requests beyond which requests get 503. ``None``:
    #: unbounded (file descriptors bound it). A gateway sets it below its ulimit.
    max_connections: int | None = None
    #: Let several processes bind the same port (SO_REUSEPORT): the kernel spreads new
    #: connections over them, as nginx's worker processes do.
    reuse_port: bool = False


def problem_bytes(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 problem+json response that closes the connection."""
    reason = _REASONS.get(status, "Service Unavailable")
    body = json.dumps(
        {"type": "about:blank", "title": reason, "status": status, "detail": detail}
    ).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: ".encode()
        + PROBLEM_JSON
        + f"\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head that broke a limit."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head size, count and time limits (see the module)."""

    limits = ServerLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._header_count = 0
        self._refusal: bytes | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        #: A request head is awaited or arriving (not between answer and next request).
        self._in_head = True

    # -- the head deadline --------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_late)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a pipelined head behind a call being served: that call's timeouts apply
        self.transport.write(
            problem_bytes(
                408,
                f"the request head did not arrive within {self.limits.head_timeout_s:g} s; "
                "send the request line and headers at once",
            )
        )
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    # -- the head's size and count -----------------------------------------------------
    def _refuse_head(self, detail: str) -> None:
        self._refusal = problem_bytes(431, detail)
        raise _HeadRefused

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._header_count = 0
        self._in_head = True
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_head_bytes:
            self._refuse_head(
                f"the request line is longer than {self.limits.max_head_bytes} bytes; "
                "send long parameters in the body"
            )
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        self._header_count += 1
        if self._header_count > self.limits.max_header_count:
            self._refuse_head(
                f"the request has more than {self.limits.max_header_count} header lines; "
                "send fewer headers"
            )
        if self._head_bytes > self.limits.max_head_bytes:
            self._refuse_head(
                f"the request's headers are larger than {self.limits.max_head_bytes} bytes "
                "in all; send fewer or shorter headers (large data belongs in the body)"
            )
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers a parser error with 400; a head that broke a limit gets 431."""
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            super().send_400_response(msg)
            return
        self._disarm_head_timer()
        self.transport.write(refusal)
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        self._in_head = False
        limit = self.limits.max_connections
        if limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit):
            app = self.app
            self.app = _overloaded  # this request only: the cycle takes the app now
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()


async def _overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Service unavailable",
            "status": 503,
            "detail": "the server has too many connections open right now; retry shortly",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", PROBLEM_JSON),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def protocol_for(limits: ServerLimits) -> type[GuardedHttpToolsProtocol]:
    """The guarded protocol class with these limits."""
    return type("GuardedHttpTools", (GuardedHttpToolsProtocol,), {"limits": limits})


def serve(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    graceful_shutdown_s: float = 10.0,
    limits: ServerLimits | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; uvicorn then stops accepting and drains in-flight calls.

    ``app`` is any ASGI app: a FastAPI app, or one that dispatches in front of it.
    """
    limits = limits or ServerLimits()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=protocol_for(limits),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(graceful_shutdown_s),
        server_header=False,
    )
    server = uvicorn.Server(config)
    if not limits.reuse_port:
        server.run()
        return
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    server.run(sockets=[sock])
