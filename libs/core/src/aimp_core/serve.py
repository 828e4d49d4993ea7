"""Run an app under uvicorn (uvloop, httptools) with a graceful stop on SIGTERM."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI


def serve(app: FastAPI, *, host: str, port: int, graceful_shutdown_s: float = 10.0) -> None:
    """Serve until SIGTERM or SIGINT; uvicorn then stops accepting and drains in-flight calls."""
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
