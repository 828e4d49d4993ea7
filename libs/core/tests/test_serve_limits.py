"""The guarded uvicorn protocol: bounded request heads, a head deadline, a connection cap."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from aimp_core.net import free_port, wait_http_ok
from aimp_core.serve import ServerLimits, protocol_for

LIMITS = ServerLimits(max_head_bytes=4096, max_header_count=20, head_timeout_s=0.5)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 at once, or after 1 s under /slow (to hold a call in flight)."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(1.0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class Server:
    def __init__(self, limits: ServerLimits) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            _app, host="127.0.0.1", port=self.port, http=protocol_for(limits),
            lifespan="off", log_config=None, access_log=False,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        wait_http_ok(f"http://127.0.0.1:{self.port}/", timeout_s=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server(LIMITS) as running:
        yield running


def _raw(port: int, data: bytes, *, wait_s: float = 5.0) -> bytes:
    """Send raw bytes, then read until the server closes (or ``wait_s``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


def _problem(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/problem+json" in head.lower()
    return status, json.loads(body)


def test_a_normal_request_is_served(server: Server) -> None:
    """Heads within every limit reach the app."""
    resp = httpx.get(f"http://127.0.0.1:{server.port}/", headers={"x-a": "1" * 1000})
    assert (resp.status_code, resp.text) == (200, "ok")


def test_too_many_header_lines_is_431(server: Server) -> None:
    """More header lines than allowed get 431 problem+json and a closed connection."""
    lines = b"".join(b"x-h%d: v\r\n" % i for i in range(LIMITS.max_header_count + 1))
    status, body = _problem(_raw(server.port, b"GET / HTTP/1.1\r\nhost: a\r\n" + lines + b"\r\n"))
    assert status == 431 and "header lines" in body["detail"]


def test_headers_larger_than_allowed_is_431(server: Server) -> None:
    """A head above the byte limit gets 431 even with few lines."""
    big = b"x-big: " + b"a" * (LIMITS.max_head_bytes + 1) + b"\r\n"
    status, body = _problem(_raw(server.port, b"GET / HTTP/1.1\r\nhost: a\r\n" + big + b"\r\n"))
    assert status == 431 and str(LIMITS.max_head_bytes) in body["detail"]


def test_a_long_request_line_is_431(server: Server) -> None:
    """A request line above the byte limit gets 431."""
    url = b"/" + b"a" * (LIMITS.max_head_bytes + 1)
    status, _ = _problem(_raw(server.port, b"GET " + url + b" HTTP/1.1\r\nhost: a\r\n\r\n"))
    assert status == 431


def test_a_trickled_head_is_cut_off_with_408(server: Server) -> None:
    """A head that is still incomplete after the head timeout gets 408 and a close."""
    started = time.monotonic()
    response = _raw(server.port, b"GET / HTTP/1.1\r\nhost: a\r\nx-slow: ")
    took = time.monotonic() - started
    status, body = _problem(response)
    assert status == 408 and "request head" in body["detail"]
    # (event-loop timers may fire a few ms early; the point is "about the timeout, not never")
    assert LIMITS.head_timeout_s * 0.9 <= took < LIMITS.head_timeout_s + 2


def test_a_silent_connection_is_closed_with_408(server: Server) -> None:
    """A connection that never sends a byte is closed after the head timeout."""
    status, _ = _problem(_raw(server.port, b""))
    assert status == 408


def test_a_kept_alive_connection_serves_calls_longer_than_the_head_timeout(
    server: Server,
) -> None:
    """The head deadline covers heads only: calls spread over a kept-alive connection pass."""
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as http:
        for _ in range(3):
            assert http.get("/").status_code == 200
            time.sleep(LIMITS.head_timeout_s / 2)
        assert http.get("/").status_code == 200


def test_connections_beyond_the_cap_get_503() -> None:
    """With the connection cap reached, a further call gets 503 problem+json with Retry-After."""
    with Server(ServerLimits(max_connections=1)) as capped:

        def slow() -> None:
            httpx.get(f"http://127.0.0.1:{capped.port}/slow", timeout=5)

        holder = threading.Thread(target=slow)
        holder.start()
        time.sleep(0.2)  # the slow call is in flight
        resp = httpx.get(f"http://127.0.0.1:{capped.port}/", timeout=5)
        holder.join()
    assert resp.status_code == 503
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["retry-after"] == "1"
    assert "too many connections" in resp.json()["detail"]
