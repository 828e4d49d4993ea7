"""A lean HTTP/1.1 keep-alive client: an asyncio Protocol, httptools' parser, a pool per origin.

The gateway's upstream calls are one request, one response, on a kept-alive
connection to a pod. aiohttp does that with a general client's layers (a
request and a response object, a stream reader, a writer, tracing signals,
cookie and redirect handling); this does only what the gateway needs. In
py-spy profiles of bench/gateway.py (2 shared cores) the upstream call took
~120-220 us of CPU with aiohttp and takes ~30-50 us with this, system calls
included. The semantics stay those of :mod:`aimp_gateway.upstream`: bodies
byte-exact, no redirects, no decompression, no headers invented beyond ``Host``
and ``Content-Length``.

:class:`aimp_gateway.http1_pool.Pool` keeps these connections per origin.

A response is either *buffered* (read whole, then handed over) or *streamed*
(handed over at its head; the body is read as the caller iterates), by the
caller's choice at the head (see :class:`Connection.wants_stream`). A
streamed body is flow-controlled: reading from the pod pauses while more than
:data:`HIGH_WATER_BYTES` wait for the caller.

Errors are plain exceptions for :mod:`aimp_gateway.upstream` to map:
:class:`OSError` or :class:`TimeoutError` while connecting, :class:`Broken`
once the request may have been sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import httptools

#: A streamed body pauses reading from the pod while this much waits for the caller.
HIGH_WATER_BYTES = 256 * 1024
#: Statuses that never have a body (RFC 9110 §6.4.1); llhttp knows them too.
NO_BODY = frozenset({204, 304})
Headers = list[tuple[bytes, bytes]]
#: Decides at the head whether the body is streamed: (status, raw headers) -> bool.
StreamChooser = Callable[[int, Headers], bool]


class Broken(Exception):
    """The connection broke (or the pod spoke broken HTTP) before the whole answer came."""


class Connection(asyncio.Protocol):
    """One kept-alive connection to a pod; one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[str, int]) -> None:
        self.loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.lost = False
        #: Still counted among the pool's open connections.
        self.counted = True
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: Headers = []
        self.wants_stream: StreamChooser | None = None
        self.streaming = False
        self.complete = False
        self.keep_alive = False
        self.head_only = False
        self._body: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._error: BaseException | None = None
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._head is None or self.complete:
            # Bytes after the whole answer, before another request: a pod that speaks out
            # of turn. The answer already read stands; the connection is not reused.
            self.keep_alive = False
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Broken(f"invalid HTTP from the pod ({type(exc).__name__})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._head is None or self.complete:
            return
        if self.streaming and exc is None and self._close_delimited():
            self._finish(keep_alive=False)  # a body that ends with the connection
            return
        self._fail(Broken("the connection closed before the whole answer came"))

    # -- httptools callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: out of turn (see data_received)
            self.keep_alive = False
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self.headers = []  # an interim answer (100 Continue, 103): the real one follows
            return
        self.status = status
        if self.head_only:  # HEAD: no body follows whatever the length says
            self._finish(keep_alive=False)
            return
        chooser = self.wants_stream
        if chooser is not None and chooser(status, self.headers):
            self.streaming = True
            self._wake_head()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self._body.append(body)
        if self.streaming:
            self._buffered += len(body)
            if self._buffered > HIGH_WATER_BYTES and not self._paused and self.transport:
                self._paused = True
                self.transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        if self.status == 0 or self.complete:
            return  # the end of an interim answer, or of a HEAD's (ignored) body
        self._finish(keep_alive=self._parser.should_keep_alive())

    # -- the caller's side ------------------------------------------------------------
    def send(
        self, head: bytes, body: bytes, chooser: StreamChooser | None, *, head_only: bool
    ) -> asyncio.Future[None]:
        """Write the request; the future is done at the head of a streamed answer, or at
        the end of a buffered one (raising :class:`Broken` on a failure)."""
        self._reset()
        self._parser = httptools.HttpResponseParser(self)
        self.wants_stream = chooser
        self.head_only = head_only
        loop = self.loop
        self._head = loop.create_future()
        if self.lost or self.transport is None:
            self._fail(Broken("the kept-alive connection was closed by the pod"))
            return self._head
        if body:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        return self._head

    def body(self) -> bytes:
        """The whole body of a buffered answer."""
        body = self._body
        return body[0] if len(body) == 1 else b"".join(body)

    def next_chunks(self) -> bytes | None:
        """What arrived of a streamed body so far (b"": nothing yet; None: the end).

        Raises :class:`Broken` if the stream broke."""
        if self._body:
            data = self.body()
            self._body = []
            self._buffered = 0
            if self._paused and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            return data
        if self._error is not None:
            raise self._error
        return None if self.complete else b""

    def data_waiter(self) -> asyncio.Future[None]:
        """A future done when more of a streamed body (or its end or a break) arrives."""
        self._waiter = self.loop.create_future()
        return self._waiter

    def fail_waiting(self, error: BaseException) -> None:
        """End a streamed body with ``error`` (the gateway closed it while it was read)."""
        if not self.complete:
            self._fail(error)

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.lost and self._error is None

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()

    # -- internals --------------------------------------------------------------------
    def _close_delimited(self) -> bool:
        """A body without Content-Length or chunked coding ends when the connection does."""
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length" or (
                lname == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return False
        return True

    def _finish(self, *, keep_alive: bool) -> None:
        self.complete = True
        self.keep_alive = keep_alive
        self._wake_head()
        self._wake()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        self._wake()

    def _wake_head(self) -> None:
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
