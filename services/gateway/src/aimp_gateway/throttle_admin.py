"""``/admin/throttle/...`` through the gateway: forwarded to the throttle service.

DESIGN.md offers the throttle policy API through the gateway as well as on
the throttle service. The throttle service owns the rules and checks the
caller's token and role itself (against this gateway's JWKS), so the gateway
forwards method, path, query, body and the caller's ``Authorization``
unchanged, and passes the answer back (problem+json errors included).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from aimp_core.errors import ServiceUnavailable

PREFIX = "/admin/throttle"
#: Request headers the throttle service needs; everything else stays at the gateway.
_REQUEST_HEADERS = ("authorization", "content-type", "accept", "traceparent")
#: Response headers worth passing back (the body's type, where a new rule lives, hints).
_RESPONSE_HEADERS = ("content-type", "location", "retry-after", "ratelimit", "ratelimit-policy")


class ThrottleAdmin:
    """An HTTP client for the throttle service, with every call bounded by a timeout."""

    def __init__(self, base_url: str, *, timeout_s: float) -> None:
        self.base_url = base_url
        self.client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def forward(self, request: Request, path: str) -> Response:
        headers = {k: v for k in _REQUEST_HEADERS if (v := request.headers.get(k)) is not None}
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            headers["x-request-id"] = str(request_id)
        try:
            answer = await self.client.request(
                request.method,
                # Re-encoded: the decoded path may hold characters a URL cannot carry.
                f"{PREFIX}/{quote(path, safe='/')}",
                params=list(request.query_params.multi_items()),
                content=await request.body(),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the throttle service at {self.base_url} did not answer ({type(exc).__name__}); "
                "check that aimp-throttle runs (aimp status) and retry"
            ) from None
        passed = {k: v for k in _RESPONSE_HEADERS if (v := answer.headers.get(k)) is not None}
        return Response(answer.content, status_code=answer.status_code, headers=passed)

    async def aclose(self) -> None:
        await self.client.aclose()


def _admin(request: Request) -> ThrottleAdmin:
    admin: ThrottleAdmin = request.app.state.throttle_admin
    return admin


AdminDep = Annotated[ThrottleAdmin, Depends(_admin)]

router = APIRouter(tags=["throttle"])


async def forward(path: str, request: Request, admin: AdminDep) -> Response:
    return await admin.forward(request, path)


for _method in ("GET", "PUT", "POST", "DELETE"):
    router.add_api_route(
        PREFIX + "/{path:path}",
        forward,
        methods=[_method],
        operation_id=f"throttle_admin_{_method.lower()}",
        summary=f"{_method} on the throttle service's admin API (forwarded)",
        description=(
            "Forwarded to the throttle service (its OpenAPI documents each route): "
            "policies under /admin/throttle/policies/{policy_id}, plans under "
            "/admin/throttle/plans/{plan_id}, a client's plan under "
            "/admin/throttle/clients/{client_id}, usage under "
            "/admin/throttle/usage/{client_id}. Reads need role operator or admin, changes admin."
        ),
    )
