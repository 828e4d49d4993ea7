"""A tiny upstream for the throttle tests: ``/echo/...`` answers at once, ``/slow/{s}`` later.

Run as ``python upstream_app.py PORT``.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.match_info["seconds"]))
    return web.Response(text="late")


def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_get("/slow/{seconds}", slow)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
