"""A small Open Inference Protocol server with a latency knee, run as its own process.

It stands in for Triton in the load-test tests: each inference takes ``--base-ms``
while at most ``--knee`` calls are in flight, and ``--slow-ms`` once more are, so one
replica sustains about knee / base calls per second. It reports one FP32 input of shape
[-1, 4] and answers 400 to a request that does not match it. ``--fail-every N`` answers
500 to every Nth call. Flags a pod command gets from deploy-control are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="knee")
parser.add_argument("--http-port", type=int, required=True)
parser.add_argument("--base-ms", type=float, default=40.0)
parser.add_argument("--slow-ms", type=float, default=400.0)
parser.add_argument("--knee", type=int, default=3)
parser.add_argument("--fail-every", type=int, default=0)
args, _unknown = parser.parse_known_args()

INPUTS = [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
state = {"in_flight": 0, "calls": 0}


async def ok(_request: web.Request) -> web.Response:
    return web.Response(status=200)


async def metadata(request: web.Request) -> web.Response:
    if request.match_info["model"] != args.name:
        return web.json_response({"error": "unknown model"}, status=404)
    return web.json_response(
        {"name": args.name, "platform": "knee", "inputs": INPUTS, "outputs": []}
    )


async def infer(request: web.Request) -> web.Response:
    body = await request.json()
    (tensor,) = body["inputs"]
    if tensor != {"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}:
        return web.json_response({"error": f"unexpected input {json.dumps(tensor)}"}, status=400)
    state["calls"] += 1
    if args.fail_every and state["calls"] % args.fail_every == 0:
        return web.json_response({"error": "failing on purpose"}, status=500)
    state["in_flight"] += 1
    try:
        slow = state["in_flight"] > args.knee
        await asyncio.sleep((args.slow_ms if slow else args.base_ms) / 1000)
    finally:
        state["in_flight"] -= 1
    out = {"name": "y", "datatype": "FP32", "shape": [1], "data": [0.0]}
    return web.json_response({"model_name": args.name, "outputs": [out]})


app = web.Application()
app.router.add_get("/v2/health/ready", ok)
app.router.add_get("/v2/health/live", ok)
app.router.add_get("/v2/models/{model}/ready", ok)
app.router.add_get("/v2/models/{model}", metadata)
app.router.add_post("/v2/models/{model}/infer", infer)
web.run_app(app, host="127.0.0.1", port=args.http_port, print=None, access_log=None)
