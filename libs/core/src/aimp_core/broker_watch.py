"""Notice at once when a Kafka broker process goes away (used by EventPublisher).

A broker with memory storage (Tansu, locally) loses every record when it
restarts, including records already acknowledged but not yet consumed; the
producers must then send those again. Client libraries reconnect quietly, so
this watch keeps its own connection to each bootstrap broker, sends an
``ApiVersions`` request every ``interval_s`` (which also keeps the connection
from being closed as idle) and calls ``on_lost`` when an established
connection breaks or stops answering, and ``on_up`` each time a connection is
made (so a producer in backoff can retry at once). A broker that is simply not there yet is
not a loss; a broker with durable storage that restarts is (a harmless false
alarm: the producer repeats recent events, which consumers deduplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

_API_VERSIONS = 18
_CLIENT_ID = b"aimp-broker-watch"


def _request(correlation_id: int) -> bytes:
    """An ApiVersions v0 request frame (no body)."""
    header = struct.pack(">hhih", _API_VERSIONS, 0, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID
    return struct.pack(">i", len(header)) + header


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    return out


class BrokerWatch:
    """Background tasks (one per bootstrap broker) calling ``on_lost`` when one goes away."""

    def __init__(
        self,
        bootstrap: str,
        on_lost: Callable[[], None],
        *,
        on_up: Callable[[], None] | None = None,
        interval_s: float = 1.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.hosts = _hosts(bootstrap)
        self.on_lost = on_lost
        self.on_up = on_up
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._watch(host, port), name=f"broker-watch-{host}:{port}")
            for host, port in self.hosts
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _watch(self, host: str, port: int) -> None:
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), self.timeout_s
                )
            except (OSError, TimeoutError):
                await asyncio.sleep(self.interval_s)  # not there (yet): nothing was lost
                continue
            if self.on_up is not None:
                self.on_up()
            try:
                await self._ping_until_broken(reader, writer)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                log.warning("kafka broker %s:%d went away (%s)", host, port, type(exc).__name__)
                self.on_lost()
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _ping_until_broken(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        correlation_id = 0
        while True:
            correlation_id = (correlation_id + 1) % 2**31
            writer.write(_request(correlation_id))
            await asyncio.wait_for(writer.drain(), self.timeout_s)
            size = struct.unpack(">i", await self._read(reader, 4))[0]
            body = await self._read(reader, size)
            if struct.unpack_from(">i", body)[0] != correlation_id:
                raise ValueError("the broker answered another request")
            # Sleep, but notice a closed connection while sleeping.
            with contextlib.suppress(TimeoutError):
                data = await asyncio.wait_for(reader.read(1), self.interval_s)
                if not data:
                    raise asyncio.IncompleteReadError(b"", 1)
                raise ValueError("the broker sent bytes nobody asked for")

    async def _read(self, reader: asyncio.StreamReader, n: int) -> bytes:
        return await asyncio.wait_for(reader.readexactly(n), self.timeout_s)
