"""HTTP routes: every path the sidecar does not own itself is proxied upstream."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from aimp_core.errors import AimpError, ServiceUnavailable, request_id_of
from aimp_core.tracing import inject_headers
from aimp_registry_sidecar import metrics
from aimp_registry_sidecar.admission import Rejected, Verdict
from aimp_registry_sidecar.headers import downstream_response_headers, upstream_request_headers
from aimp_registry_sidecar.sidecar import Sidecar
from aimp_registry_sidecar.upstream import ServerRefused

#: Seconds a refused caller should wait; other pods can usually take the call at once.
RETRY_AFTER_S = 1.0
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def get_sidecar(request: Request) -> Sidecar:
    sidecar: Sidecar = request.app.state.sidecar
    return sidecar


SidecarDep = Annotated[Sidecar, Depends(get_sidecar)]

router = APIRouter()


def _refusal(verdict: Verdict, sidecar: Sidecar) -> ServiceUnavailable:
    if verdict is Verdict.DRAINING:
        detail = f"this pod of {sidecar.service!r} is shutting down; send the call to another pod"
    else:
        gate = sidecar.gate
        detail = (
            f"this pod of {sidecar.service!r} is at capacity ({gate.in_flight} running, "
            f"{gate.queued} queued); retry shortly or send the call to another pod"
        )
    return ServiceUnavailable(detail, retry_after_s=RETRY_AFTER_S)


@router.api_route("/{path:path}", methods=METHODS, include_in_schema=False)
async def proxy(request: Request, sidecar: SidecarDep) -> Response:
    """Forward the call byte for byte once the caller is allowed and a slot is free."""
    started = time.perf_counter()
    status = 500
    try:
        await sidecar.callers.check(request.headers.get("authorization"))
        body = await request.body()
        headers = upstream_request_headers(
            request.headers.raw, request_id=request_id_of(request), trace=inject_headers({})
        )
        method = request.method
        try:
            async with sidecar.gate.slot():
                upstream = await sidecar.upstream.forward(
                    method,
                    request.scope.get("raw_path") or request.url.path.encode(),
                    request.scope.get("query_string", b""),
                    headers,
                    body,
                )
        except Rejected as exc:
            raise _refusal(exc.verdict, sidecar) from None
        except ServerRefused:
            sidecar.registrar.recheck()  # likely gone: report DOWN now, not at the next poll
            raise
        status = upstream.status
        response = Response(status_code=upstream.status)
        response.body = upstream.body
        response.raw_headers = downstream_response_headers(
            upstream.headers, body_length=None if method == "HEAD" else len(upstream.body)
        )
        return response
    except AimpError as exc:
        status = exc.status
        raise
    finally:
        metrics.REQUESTS.labels(sidecar.service, str(status)).inc()
        metrics.LATENCY.labels(sidecar.service).observe(time.perf_counter() - started)
