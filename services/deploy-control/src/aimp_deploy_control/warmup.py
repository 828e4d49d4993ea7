"""Warm-up of a new revision: sample requests to each of its pods before it takes traffic.

The sample is one all-zero row per declared input (as `aimp deploy` sends), built from
the registered model's schema, or, for a plain model file, from the metadata the server
itself reports (``GET /v2/models/{name}``). Calls go to each pod's inference server
directly (``PodInfo.upstream_url``): the sidecar in front of it verifies caller tokens
that only the gateway issues, and the server is what needs warming.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from aimp_deploy_control.backend import PodInfo
from aimp_deploy_control.revision_settings import RevisionSettings

log = logging.getLogger(__name__)

#: A zero of each Open Inference Protocol datatype, in its JSON form.
_ZERO: dict[str, Any] = {"BOOL": False, "BYTES": ""}


@dataclass
class WarmupProgress:
    """What ``GET /v1/deployments/{name}`` shows of a revision's warm-up (mutated by it)."""

    pods_total: int = 0
    pods_warmed: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    last_error: str | None = None


class WarmupFailed(Exception):
    """A pod did not answer the sample requests in time."""


def sample_request(inputs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """An Open Inference Protocol request with one all-zero tensor per input (every free
    dimension 1: one row)."""
    out = []
    for t in inputs:
        shape = [1 if int(d) == -1 else int(d) for d in t["shape"]]
        size = 1
        for d in shape:
            size *= d
        zero = _ZERO.get(str(t["datatype"]), 0)
        out.append(
            {"name": t["name"], "datatype": t["datatype"], "shape": shape, "data": [zero] * size}
        )
    return {"inputs": out}


class Warmer:
    def __init__(
        self,
        settings: RevisionSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._http = httpx.AsyncClient(timeout=settings.warmup_call_timeout_s, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def warm(
        self,
        pods: list[PodInfo],
        model: str,
        inputs: list[dict[str, Any]] | None,
        progress: WarmupProgress,
        deadline: float,
    ) -> None:
        """Send the sample requests to every pod until each answered them all;
        WarmupFailed when one did not by ``deadline`` (a monotonic time)."""
        progress.pods_total = len(pods)
        for pod in pods:
            await self._warm_one(pod, model, inputs, progress, deadline)
            progress.pods_warmed += 1

    async def _warm_one(
        self,
        pod: PodInfo,
        model: str,
        inputs: list[dict[str, Any]] | None,
        progress: WarmupProgress,
        deadline: float,
    ) -> None:
        base = f"{pod.upstream_url}/v2/models/{model}"
        body: dict[str, Any] | None = None
        answered = 0
        while answered < self.settings.warmup_requests:
            if self._clock() >= deadline:
                raise WarmupFailed(
                    f"{pod.pod_id} answered {answered} of {self.settings.warmup_requests} "
                    f"warm-up requests before the deadline (last error: {progress.last_error}); "
                    "see its logs (GET /v1/pods/{pod_id}/logs)"
                )
            try:
                if body is None:
                    body = sample_request(
                        inputs if inputs is not None else await self._inputs(base)
                    )
                resp = await self._http.post(f"{base}/infer", json=body)
                if resp.status_code == 200:
                    answered += 1
                    progress.requests_ok += 1
                    continue
                progress.last_error = f"{pod.pod_id}: {resp.status_code} {resp.text[:200]}"
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                progress.last_error = f"{pod.pod_id}: {type(exc).__name__}: {exc}"[:300]
            progress.requests_failed += 1
            await asyncio.sleep(self.settings.warmup_retry_interval_s)
        log.info("pod warmed up", extra={"pod": pod.pod_id, "requests": answered})

    async def _inputs(self, base: str) -> list[dict[str, Any]]:
        """The inputs the server itself reports for the model."""
        resp = await self._http.get(base)
        resp.raise_for_status()
        inputs: list[dict[str, Any]] = resp.json()["inputs"]
        return inputs
