"""Kept-alive upstream connections (:class:`aimp_gateway.http1.Connection`) per origin."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from aimp_gateway.http1 import Connection


class Pool:
    """Kept-alive connections per (host, port); at most ``max_connections`` open in all.

    A connection idle for ``keepalive_s`` is closed (before the pod's own keep-alive
    timeout, so a pod rarely closes one just as a request goes out on it).
    """

    def __init__(self, *, connect_timeout_s: float, max_connections: int, keepalive_s: float):
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self.loop = asyncio.get_running_loop()
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._open = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper = self.loop.create_task(self._sweep())

    async def acquire(self, host: str, port: int) -> Connection:
        """A kept-alive connection to (host, port), or a new one (OSError or TimeoutError
        when it cannot be made within the connect timeout)."""
        key = (host, port)
        while True:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if not conn.lost:
                    return conn
                self._discard(conn)
            if self._open < self.max_connections:
                break
            if self._close_oldest_idle():  # another origin's idle connection gives way
                continue
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_slot()  # woken, but leaving: the next in line gets the turn
                raise
        self._open += 1
        conn = Connection(self.loop, key)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await self.loop.create_connection(lambda: conn, host, port)
        except BaseException:
            self._open -= 1
            self._wake_slot()
            raise
        return conn

    def release(self, conn: Connection) -> None:
        """The call is over: keep the connection for the next one if it can be, else close it."""
        if conn.reusable():
            conn.idle_since = time.monotonic()
            conn._head = None
            self._idle.setdefault(conn.key, []).append(conn)
            self._wake_slot()
            return
        conn.close()
        self._discard(conn)

    def drop(self, conn: Connection) -> None:
        """Close the connection at once (a call cut off mid-answer)."""
        conn.abort()
        self._discard(conn)

    def _discard(self, conn: Connection) -> None:
        if conn.counted:
            conn.counted = False
            self._open -= 1
            self._wake_slot()

    def _wake_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_oldest_idle(self) -> bool:
        oldest: Connection | None = None
        for conns in self._idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)
        oldest.close()
        self._discard(oldest)
        return True

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(max(self.keepalive_s / 2, 0.1))
            cutoff = time.monotonic() - self.keepalive_s
            for key, conns in list(self._idle.items()):
                keep = [c for c in conns if not c.lost and c.idle_since > cutoff]
                for conn in conns:
                    if conn not in keep:
                        conn.close()
                        self._discard(conn)
                if keep:
                    self._idle[key] = keep
                else:
                    del self._idle[key]

    async def close(self) -> None:
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
