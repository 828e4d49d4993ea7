"""HTTP routes for pod logs: the last lines as text, and a live tail as server-sent events.

Both read the backend's own logs of a pod's processes (local files, or the Kubernetes
API's pod log); nothing is added to them. The pod and the process are checked before
the response starts, so a wrong name is a 404 or 400, never a stream that ends at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from prometheus_client import Gauge

from aimp_core.errors import BadRequest, NotFound
from aimp_deploy_control.api import DeploymentsDep, Reader
from aimp_deploy_control.backend import PodLogs
from aimp_deploy_control.observe_settings import PodObserveSettings
from aimp_deploy_control.pod_logs import LineSplitter

#: ``process`` values: the inference server (Triton, C++ or Java pod) or its sidecar.
PROCESSES = ("server", "sidecar")

LIVE_TAILS = Gauge(
    "aimp_deploy_control_log_tails_open", "Live pod log tails (server-sent events) open now."
)

router = APIRouter(prefix="/v1", tags=["pods"])


@dataclass(frozen=True)
class LogRequest:
    source: PodLogs
    pod_id: str
    sidecar: bool
    tail: int
    max_line_bytes: int


def get_observe(request: Request) -> PodObserveSettings:
    """The app's log settings (``app.state.pod_observe``), read from the environment once."""
    state = request.app.state
    if getattr(state, "pod_observe", None) is None:
        state.pod_observe = PodObserveSettings()
    observe: PodObserveSettings = state.pod_observe
    return observe


async def get_log_request(
    pod_id: str,
    deployments: DeploymentsDep,
    observe: Annotated[PodObserveSettings, Depends(get_observe)],
    process: Annotated[
        str, Query(max_length=64, description="'server' (default) or 'sidecar'.")
    ] = "server",
    tail: Annotated[
        int | None,
        Query(
            description="Lines from the end (default AIMP_DEPLOY_CONTROL_LOG_TAIL_DEFAULT_LINES)."
        ),
    ] = None,
) -> LogRequest:
    if process not in PROCESSES:
        raise BadRequest(
            f"process {process!r} is not known: use one of {', '.join(map(repr, PROCESSES))}"
        )
    lines = observe.log_tail_default_lines if tail is None else tail
    if not 0 <= lines <= observe.log_tail_max_lines:
        raise BadRequest(
            f"tail={lines} is out of range: give 0 to {observe.log_tail_max_lines} lines "
            "(AIMP_DEPLOY_CONTROL_LOG_TAIL_MAX_LINES sets the most)"
        )
    backend = deployments.backend
    if not hasattr(backend, "logs"):
        raise BadRequest(f"the {type(backend).__name__} backend cannot read pod logs")
    if all(p.pod_id != pod_id for p in backend.pods()):
        raise NotFound(f"no pod {pod_id!r}: GET /v1/pods lists the pods")
    return LogRequest(
        cast(PodLogs, backend), pod_id, process == "sidecar", lines, observe.log_line_max_bytes
    )


LogRequestDep = Annotated[LogRequest, Depends(get_log_request)]


@router.get(
    "/pods/{pod_id}/logs",
    response_class=PlainTextResponse,
    summary="The last lines of a pod's server or sidecar log",
    responses={400: {}, 404: {}},
)
async def get_pod_log(_caller: Reader, req: LogRequestDep) -> PlainTextResponse:
    chunks = [
        chunk
        async for chunk in req.source.logs(req.pod_id, sidecar=req.sidecar, tail_lines=req.tail)
    ]
    return PlainTextResponse(b"".join(chunks).decode("utf-8", errors="replace"))


@router.get(
    "/pods/{pod_id}/logs/stream",
    response_class=EventSourceResponse,
    summary="Live tail of a pod's log: the last lines, then each new one (one event a line)",
    responses={400: {}, 404: {}},
)
async def stream_pod_log(_caller: Reader, req: LogRequestDep) -> AsyncIterator[ServerSentEvent]:
    """A ``data:`` event per line and a ``: ping`` comment after 15 s without one; it
    ends when the client disconnects (or the pod stops)."""
    split = LineSplitter(req.max_line_bytes)
    LIVE_TAILS.inc()
    try:
        async for chunk in req.source.logs(
            req.pod_id, sidecar=req.sidecar, tail_lines=req.tail, follow=True
        ):
            for line in split.feed(chunk):
                yield _event(line)
        for line in split.flush():
            yield _event(line)
    finally:
        LIVE_TAILS.dec()


def _event(line: bytes) -> ServerSentEvent:
    # A CR inside a line would end the event's data line on the wire.
    return ServerSentEvent(raw_data=line.decode("utf-8", errors="replace").replace("\r", " "))
