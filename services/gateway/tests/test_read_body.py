"""The request body reader: whole bodies in pieces, 413 above the limit, 408 when trickled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aimp_core.errors import PayloadTooLarge, RequestTimeout
from aimp_gateway.proxy import ClientGone, read_body


def _receiver(*messages: dict[str, Any], then_hang: bool = False) -> Callable[[], Awaitable[Any]]:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        if then_hang:
            await asyncio.Event().wait()  # the client sends nothing more
        return {"type": "http.disconnect"}

    return receive


def _piece(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_pieces_are_joined() -> None:
    """A body sent in several messages comes back whole."""
    receive = _receiver(_piece(b"ab", True), _piece(b"", True), _piece(b"cd", False))
    assert await read_body(receive, 10, timeout_s=5) == b"abcd"


async def test_more_than_the_limit_is_413() -> None:
    """One byte over the limit is refused with 413."""
    receive = _receiver(_piece(b"abc", True), _piece(b"de", False))
    with pytest.raises(PayloadTooLarge):
        await read_body(receive, 4, timeout_s=5)


async def test_a_trickled_body_is_408() -> None:
    """A body that stops arriving before its end is refused with 408 after the deadline."""
    receive = _receiver(_piece(b"abc", True), then_hang=True)
    with pytest.raises(RequestTimeout) as err:
        await read_body(receive, 100, timeout_s=0.05)
    assert err.value.status == 408 and "3 bytes came" in err.value.detail


async def test_a_client_leaving_mid_body_is_client_gone() -> None:
    """A disconnect before the body's end raises ClientGone (no answer is sent)."""
    with pytest.raises(ClientGone):
        await read_body(_receiver(_piece(b"abc", True)), 100, timeout_s=5)
