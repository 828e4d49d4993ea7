"""Run an app under uvicorn (uvloop, httptools) with a graceful stop on SIGTERM."""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp


def serve(app: ASGIApp, *, host: str, port: int, graceful_shutdown_s: float = 10.0) -> None:
    """Serve until SIGTERM or SIGINT; uvicorn then stops accepting and drains in-flight calls.

    ``app`` is any ASGI app: a FastAPI app, or one that dispatches in front of it.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(graceful_shutdown_s),
        server_header=False,
    )
    uvicorn.Server(config).run()
