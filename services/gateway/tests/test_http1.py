"""The lean upstream client against a scripted raw-socket pod: HTTP/1.1 framing and the pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from aimp_gateway.upstream import Upstream, UpstreamBroken, UpstreamResponse

#: path -> the raw bytes the pod answers (and whether it then closes the connection).
Script = dict[str, tuple[bytes, bool]]


@dataclass
class RawPod:
    """A pod that answers each request with scripted raw bytes and records what it got."""

    script: Script
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                path = head.split(b" ", 2)[1].decode()
                answer, close = self.script[path]
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def pod() -> AsyncIterator[Callable[[Script], RawPod]]:
    """Makes pods (served by :func:`_serve`); closes their servers afterwards."""
    pods: list[RawPod] = []

    def make(script: Script) -> RawPod:
        pods.append(RawPod(script))
        return pods[-1]

    yield make
    for p in pods:
        if p.server is not None:
            p.server.close()


async def _serve(p: RawPod) -> RawPod:
    p.server = await asyncio.start_server(p.handle, "127.0.0.1", 0)
    p.port = p.server.sockets[0].getsockname()[1]
    return p


async def _client(**kw: float | int) -> Upstream:
    upstream = Upstream(
        connect_timeout_s=1,
        total_timeout_s=float(kw.pop("total_timeout_s", 2)),
        max_connections=int(kw.pop("max_connections", 10)),
        **kw,  # type: ignore[arg-type]
    )
    await upstream.start()
    return upstream


async def _all(resp: UpstreamResponse) -> bytes:
    assert resp.stream is not None
    try:
        return b"".join([chunk async for chunk in resp.stream.chunks()])
    finally:
        resp.stream.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Case: Kept\r\n\r\nok"


async def test_keep_alive_reuses_one_connection(pod: Callable[[Script], RawPod]) -> None:
    """Sequential calls go over one kept-alive connection; headers keep their case."""
    p = await _serve(pod({"/a": (OK, False)}))
    upstream = await _client()
    try:
        for _ in range(3):
            resp = await upstream.forward("GET", p.url + "/a", [], b"")
            assert (resp.status, resp.body) == (200, b"ok")
            assert (b"X-Case", b"Kept") in list(resp.raw_headers)
    finally:
        await upstream.close()
    assert p.connections == 1 and len(p.requests) == 3


async def test_request_bytes_are_exact(pod: Callable[[Script], RawPod]) -> None:
    """The pod gets Host, the caller's headers, Content-Length and the body byte for byte."""
    p = await _serve(pod({"/in?q=1%202": (OK, False)}))
    upstream = await _client()
    body = bytes(range(256))
    try:
        await upstream.forward("POST", p.url + "/in?q=1%202", [("X-A", "b")], body)
        await upstream.forward("POST", p.url + "/in?q=1%202", [], b"")
    finally:
        await upstream.close()
    first, empty = p.requests
    assert first.startswith(b"POST /in?q=1%202 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-A: b\r\n" in first and b"\r\nContent-Length: 256\r\n" in first
    assert first.endswith(b"\r\n\r\n" + body)
    assert b"\r\nContent-Length: 0\r\n" in empty  # a POST always says how long its body is


async def test_head_answer_has_no_body_whatever_its_length(
    pod: Callable[[Script], RawPod],
) -> None:
    """A HEAD answer ends with its head; its Content-Length describes the resource."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    p = await _serve(pod({"/h": (head, False), "/a": (OK, False)}))
    upstream = await _client()
    try:
        resp = await upstream.forward("HEAD", p.url + "/h", [], b"")
        assert (resp.status, resp.body, resp.stream) == (200, b"", None)
        assert (b"Content-Length", b"5000") in list(resp.raw_headers)
        assert (await upstream.forward("GET", p.url + "/a", [], b"")).body == b"ok"
    finally:
        await upstream.close()


async def test_chunked_answer_is_streamed_then_the_connection_reused(
    pod: Callable[[Script], RawPod],
) -> None:
    """A chunked answer is handed over as a stream, de-chunked; the connection is reused."""
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    p = await _serve(pod({"/c": (chunked, False), "/a": (OK, False)}))
    upstream = await _client()
    try:
        resp = await upstream.forward("GET", p.url + "/c", [], b"")
        assert await _all(resp) == b"abcdefg"
        assert (await upstream.forward("GET", p.url + "/a", [], b"")).body == b"ok"
    finally:
        await upstream.close()
    assert p.connections == 1


async def test_close_delimited_answer_ends_with_the_connection(
    pod: Callable[[Script], RawPod],
) -> None:
    """An answer without a length ends when the pod closes: whole, not broken."""
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 70_000
    p = await _serve(pod({"/e": (answer, True)}))
    upstream = await _client()
    try:
        resp = await upstream.forward("GET", p.url + "/e", [], b"")
        assert await _all(resp) == b"x" * 70_000
    finally:
        await upstream.close()


async def test_a_cut_fixed_length_answer_is_broken(pod: Callable[[Script], RawPod]) -> None:
    """Fewer bytes than the Content-Length, then a close: UpstreamBroken, never a short body."""
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    p = await _serve(pod({"/cut": (cut, True), "/a": (OK, False)}))
    upstream = await _client()
    try:
        with pytest.raises(UpstreamBroken):
            await upstream.forward("GET", p.url + "/cut", [], b"")
        assert (await upstream.forward("GET", p.url + "/a", [], b"")).body == b"ok"
    finally:
        await upstream.close()


async def test_interim_answers_are_skipped(pod: Callable[[Script], RawPod]) -> None:
    """A 100 Continue before the answer is not taken for the answer."""
    p = await _serve(pod({"/i": (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, False)}))
    upstream = await _client()
    try:
        resp = await upstream.forward("GET", p.url + "/i", [], b"")
    finally:
        await upstream.close()
    assert (resp.status, resp.body) == (200, b"ok")


async def test_a_connection_the_pod_closed_is_not_reused(
    pod: Callable[[Script], RawPod],
) -> None:
    """After the pod closes a kept-alive connection the next call opens a new one."""
    p = await _serve(pod({"/bye": (OK, True), "/a": (OK, False)}))
    upstream = await _client()
    try:
        assert (await upstream.forward("GET", p.url + "/bye", [], b"")).body == b"ok"
        await asyncio.sleep(0.05)  # the close reaches the client
        assert (await upstream.forward("GET", p.url + "/a", [], b"")).body == b"ok"
    finally:
        await upstream.close()
    assert p.connections == 2


async def test_the_pool_bounds_open_connections(pod: Callable[[Script], RawPod]) -> None:
    """With max_connections=1 concurrent calls wait their turn on the one connection."""
    p = await _serve(pod({"/a": (OK, False)}))
    upstream = await _client(max_connections=1)
    try:
        answers = await asyncio.gather(
            *(upstream.forward("GET", p.url + "/a", [], b"") for _ in range(5))
        )
    finally:
        await upstream.close()
    assert [a.body for a in answers] == [b"ok"] * 5
    assert p.connections == 1


async def test_bytes_out_of_turn_retire_the_connection(pod: Callable[[Script], RawPod]) -> None:
    """A pod that sends more than the answer: the answer stands, the connection is not reused."""
    p = await _serve(pod({"/two": (OK + OK, False), "/a": (OK, False)}))
    upstream = await _client()
    try:
        first = await upstream.forward("GET", p.url + "/two", [], b"")
        assert (first.status, first.body, len(first.raw_headers)) == (200, b"ok", 2)
        assert (await upstream.forward("GET", p.url + "/a", [], b"")).body == b"ok"
    finally:
        await upstream.close()
    assert p.connections == 2
