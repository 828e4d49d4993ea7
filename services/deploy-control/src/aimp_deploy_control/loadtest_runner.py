"""The load test's I/O: open-loop paced calls to one replica, step by step (adapter).

Calls go to the replica's inference server directly, not through its sidecar: the
sidecar verifies caller tokens that only the gateway issues (as the warm-up does,
warmup.py). On Kubernetes a pod's ``upstream_url`` is its own loopback address; the
server shares the pod's network namespace and listens on every address (the image
binds 0.0.0.0), so it is reached at the pod's IP on the server's port instead.

The load is *open-loop*: call i of a step is due at ``start + i / rate`` whether or not
earlier calls have answered, and its latency counts from when it was due, so a replica
that falls behind shows its queueing in the latency instead of slowing the load down
(no coordinated omission). The sample request is one all-zero row per input, built from
the metadata the server reports (``GET /v2/models/{name}``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from aimp_core.errors import Conflict
from aimp_deploy_control.backend import PodInfo
from aimp_deploy_control.loadtest import SearchConfig, Step, StopReason, next_step, summarise
from aimp_deploy_control.warmup import sample_request

log = logging.getLogger(__name__)

#: How many due calls may be sent in one go before the loop yields to their tasks.
_BURST = 64


class LoadTestFailed(Exception):
    """The replica could not be load tested (no metadata, the sample call failed, ...)."""


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_url(pod: PodInfo) -> str:
    """Where this process reaches the pod's inference server (see the module's doc)."""
    if not pod.upstream_url or not pod.url:
        raise Conflict(
            f"pod {pod.pod_id} has no address yet; wait until it is RUNNING "
            f"(GET /v1/deployments/{pod.deployment})"
        )
    if _loopback(pod.upstream_url) and not _loopback(pod.url):
        upstream, sidecar = urlsplit(pod.upstream_url), urlsplit(pod.url)
        netloc = f"{sidecar.hostname}:{upstream.port}" if upstream.port else sidecar.netloc
        return urlunsplit((upstream.scheme, netloc, upstream.path, "", ""))
    return pod.upstream_url.rstrip("/")


class StepRunner:
    """Offers one replica a rate for a step and measures it."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        infer_url: str,
        body: bytes,
        *,
        call_timeout_s: float,
        max_in_flight: int,
    ) -> None:
        self.session = session
        self.infer_url = infer_url
        self.body = body
        self.timeout = aiohttp.ClientTimeout(total=call_timeout_s)
        self.max_in_flight = max_in_flight

    async def run(self, rate_rps: float, duration_s: float) -> Step:
        loop = asyncio.get_running_loop()
        calls = max(1, round(rate_rps * duration_s))
        interval = 1.0 / rate_rps
        latencies: list[float] = []
        answered: list[float] = []
        errors = 0
        in_flight: set[asyncio.Task[None]] = set()

        async def call(due: float) -> None:
            nonlocal errors
            try:
                async with self.session.post(
                    self.infer_url,
                    data=self.body,
                    headers={"Content-Type": "application/json"},
                    timeout=self.timeout,
                ) as resp:
                    await resp.read()
                    if resp.status == 200:
                        now = loop.time()
                        latencies.append((now - due) * 1000)
                        answered.append(now)
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            errors += 1

        start = loop.time()
        for i in range(calls):
            due = start + i * interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif i % _BURST == 0:
                await asyncio.sleep(0)  # behind schedule: let answers be read meanwhile
            if len(in_flight) >= self.max_in_flight:
                errors += 1  # the replica is far behind: this call is shed, not sent
                continue
            task = asyncio.create_task(call(due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)  # each ends within call_timeout_s
        return summarise(rate_rps, latencies, errors, duration_s=duration_s, answered_at_s=answered)


async def prepare(
    session: aiohttp.ClientSession, base_url: str, model: str, timeout_s: float
) -> tuple[str, bytes]:
    """(the infer URL, a sample request body) after one successful sample call."""
    models = f"{base_url}/v2/models/{model}"
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.get(models, timeout=timeout) as resp:
            if resp.status != 200:
                text = (await resp.text())[:200]
                raise LoadTestFailed(
                    f"GET {models} answered {resp.status} ({text}); the server must report "
                    "its model's inputs (Open Inference Protocol metadata)"
                )
            meta: dict[str, Any] = await resp.json(content_type=None)
        body = json.dumps(sample_request(meta["inputs"])).encode()
        async with session.post(
            f"{models}/infer",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        ) as resp:
            if resp.status != 200:
                text = (await resp.text())[:200]
                raise LoadTestFailed(
                    f"the sample request (one all-zero row per input) failed with "
                    f"{resp.status}: {text}"
                )
            await resp.read()
    except (aiohttp.ClientError, TimeoutError, KeyError, TypeError, ValueError) as exc:
        raise LoadTestFailed(f"cannot call {models}: {type(exc).__name__}: {exc}"[:300]) from None
    return f"{models}/infer", body


#: Called before each step: (its 1-based number, its rate, the steps measured so far).
OnStep = Callable[[int, float, list[Step]], Awaitable[None]]


async def search(
    cfg: SearchConfig,
    measure: Callable[[float], Awaitable[Step]],
    on_step: OnStep,
) -> tuple[list[Step], StopReason]:
    """Run steps as loadtest.next_step decides until it stops; the steps and why."""
    steps: list[Step] = []
    while True:
        decision = next_step(cfg, steps)
        if isinstance(decision, StopReason):
            return steps, decision
        await on_step(len(steps) + 1, decision, list(steps))
        step = await measure(decision)
        log.info(
            "load test step",
            extra={
                "rate_rps": round(decision, 2),
                "achieved_rps": round(step.achieved_rps, 2),
                "p99_ms": step.p99_ms,
                "error_rate": step.error_rate,
            },
        )
        steps.append(step)
