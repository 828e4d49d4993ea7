"""Public HTTP routes: OAuth2 token endpoint, discovery documents, OIP server endpoints."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from aimp_gateway.keys import ALGORITHM
from aimp_gateway.oauth import GRANT_TYPES
from aimp_gateway.schemas import ServerMetadata, TokenError, TokenResponse
from aimp_gateway.state import GatewayDep

router = APIRouter()

#: RFC 6749 §5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"

try:
    GATEWAY_VERSION = version("aimp-gateway")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    GATEWAY_VERSION = "0.0.0"

_TOKEN_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            FORM: {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": list(GRANT_TYPES)},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                        "username": {"type": "string"},
                        "password": {"type": "string"},
                        "scope": {"type": "string", "description": "space-separated roles"},
                    },
                }
            }
        },
    }
}


def oauth_error(err: OAuth2Error) -> JSONResponse:
    """The RFC 6749 §5.2 error response (401 + WWW-Authenticate for failed Basic auth)."""
    status, body, headers = err()
    extra = {k: v for k, v in headers if k.lower() == "www-authenticate"}
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **extra})


@router.post(
    "/oauth/token",
    tags=["oauth2"],
    summary="Issue an access token (client_credentials or password grant)",
    response_model=TokenResponse,
    responses={400: {"model": TokenError}, 401: {"model": TokenError}},
    openapi_extra=_TOKEN_FORM,
)
async def issue_token(request: Request, gw: GatewayDep) -> Response:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM:
        return oauth_error(InvalidRequestError(f"send the parameters as {FORM}"))
    form = await request.form()
    items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    try:
        issued = await run_in_threadpool(
            gw.token_endpoint.token, items, request.headers.get("authorization")
        )
    except OAuth2Error as err:
        return oauth_error(err)
    return JSONResponse(issued.response(), headers=NO_STORE)


@router.get("/.well-known/jwks.json", tags=["oauth2"], summary="Public token-signing keys")
async def jwks(gw: GatewayDep) -> Response:
    return JSONResponse(gw.key.jwks(), headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/.well-known/openid-configuration", tags=["oauth2"], summary="Authorization server metadata"
)
async def openid_configuration(gw: GatewayDep) -> dict[str, Any]:
    issuer = gw.settings.token_issuer.rstrip("/")
    return {
        "issuer": gw.settings.token_issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
    }


# -- Open Inference Protocol: the gateway answers for itself --------------------------


@router.get("/v2", tags=["inference"], summary="Server metadata", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="aimp-gateway", version=GATEWAY_VERSION, extensions=[])


@router.get("/v2/health/live", tags=["inference"], summary="The gateway is alive (200)")
async def server_live() -> Response:
    return Response(status_code=200)


@router.get(
    "/v2/health/ready",
    tags=["inference"],
    summary="200 when the routing table is fresh from the registry, else 400 (KServe v2)",
)
async def server_ready(gw: GatewayDep) -> Response:
    return Response(status_code=200 if gw.discovery.fresh else 400)
