"""Run the sidecar under uvicorn with the stop order a load-balanced pod needs.

uvicorn alone, on SIGTERM, closes its listening socket at once while the registry
still lists the pod as UP. Here the first SIGTERM (or SIGINT) instead runs
:meth:`Sidecar.stop` (OUT_OF_SERVICE, grace, refuse new calls with 503, drain,
deregister) and only then lets uvicorn shut down; a second signal stops at once.
A completed drain exits with status 0.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._on_stop = on_stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self._stop_task is not None or self.should_exit:
            super().handle_exit(sig, frame)  # second signal: stop now, as uvicorn would
            return
        log.info("stop requested; draining first", extra={"signal": sig})
        self._loop.call_soon_threadsafe(self._begin_stop)

    def _begin_stop(self) -> None:
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop_then_exit())

    async def _stop_then_exit(self) -> None:
        try:
            await self._on_stop()
        except Exception:
            log.exception("drain failed; stopping anyway")
        finally:
            self.should_exit = True


def serve_draining(
    app: FastAPI, *, host: str, port: int, on_stop: Callable[[], Awaitable[None]]
) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        # In-flight calls were drained already; this only bounds idle keep-alive sockets.
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    DrainingServer(config, on_stop).run()
