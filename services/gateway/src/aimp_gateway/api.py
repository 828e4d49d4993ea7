"""Public HTTP routes: OAuth2 token, revocation (RFC 7009) and introspection (RFC 7662)
endpoints, discovery documents, OIP server endpoints."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from aimp_core.errors import ServiceUnavailable
from aimp_core.ratelimit.engine import REDIS_ERRORS
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
                        "refresh_token": {"type": "string"},
                        "scope": {"type": "string", "description": "space-separated roles"},
                    },
                }
            }
        },
    }
}
#: RFC 7009 / RFC 7662 request bodies (client authentication as at the token endpoint).
_TOKEN_PARAM_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            FORM: {
                "schema": {
                    "type": "object",
                    "required": ["token"],
                    "properties": {
                        "token": {"type": "string"},
                        "token_type_hint": {
                            "type": "string",
                            "enum": ["access_token", "refresh_token"],
                        },
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    }
}


def oauth_error(err: OAuth2Error) -> JSONResponse:
    """The RFC 6749 §5.2 error response (401 + WWW-Authenticate for failed Basic auth)."""
    status, body, headers = err()
    extra = {k: v for k, v in headers if k.lower() in ("www-authenticate", "retry-after")}
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **extra})


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": TokenError},
    401: {"model": TokenError},
    429: {"model": TokenError, "description": "Too many failed sign-ins; see Retry-After"},
}


async def _form_items(request: Request) -> list[tuple[str, str]] | Response:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM:
        return oauth_error(InvalidRequestError(f"send the parameters as {FORM}"))
    form = await request.form()
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


@router.post(
    "/oauth/token",
    tags=["oauth2"],
    summary="Issue tokens (client_credentials, password or refresh_token grant)",
    response_model=TokenResponse,
    responses=_ERRORS,
    openapi_extra=_TOKEN_FORM,
)
async def issue_token(request: Request, gw: GatewayDep) -> Response:
    items = await _form_items(request)
    if isinstance(items, Response):
        return items
    try:
        issued = await run_in_threadpool(
            gw.token_endpoint.token, items, request.headers.get("authorization")
        )
    except OAuth2Error as err:
        return oauth_error(err)
    return JSONResponse(issued.response(), headers=NO_STORE)


@router.post(
    "/oauth/revoke",
    tags=["oauth2"],
    summary="Revoke an access or refresh token of the calling client (RFC 7009)",
    responses={**_ERRORS, 200: {"description": "Revoked, or nothing to revoke"}},
    openapi_extra=_TOKEN_PARAM_FORM,
)
async def revoke_token(request: Request, gw: GatewayDep) -> Response:
    items = await _form_items(request)
    if isinstance(items, Response):
        return items
    try:
        await run_in_threadpool(
            gw.identity.control.revoke, items, request.headers.get("authorization")
        )
    except OAuth2Error as err:
        return oauth_error(err)
    except REDIS_ERRORS:
        raise ServiceUnavailable(
            "cannot revoke right now: the revocation store (Redis) is unreachable; retry",
            retry_after_s=1.0,
        ) from None
    return Response(status_code=200, headers=NO_STORE)


@router.post(
    "/oauth/introspect",
    tags=["oauth2"],
    summary="Is a token active, and whose is it? (RFC 7662, confidential clients)",
    responses=_ERRORS,
    openapi_extra=_TOKEN_PARAM_FORM,
)
async def introspect_token(request: Request, gw: GatewayDep) -> Response:
    items = await _form_items(request)
    if isinstance(items, Response):
        return items
    try:
        answer = await run_in_threadpool(
            gw.identity.control.introspect, items, request.headers.get("authorization")
        )
    except OAuth2Error as err:
        return oauth_error(err)
    except REDIS_ERRORS:
        raise ServiceUnavailable(
            "cannot introspect right now: the revocation store (Redis) is unreachable; retry",
            retry_after_s=1.0,
        ) from None
    return JSONResponse(answer, headers=NO_STORE)


@router.get("/.well-known/jwks.json", tags=["oauth2"], summary="Public token-signing keys")
async def jwks(gw: GatewayDep) -> Response:
    # Short cache: a rotated key must reach verifiers before tokens it signed do.
    return JSONResponse(gw.identity.ring.jwks(), headers={"Cache-Control": "public, max-age=60"})


@router.get(
    "/.well-known/openid-configuration", tags=["oauth2"], summary="Authorization server metadata"
)
async def openid_configuration(gw: GatewayDep) -> dict[str, Any]:
    issuer = gw.settings.token_issuer.rstrip("/")
    return {
        "issuer": gw.settings.token_issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": list(gw.token_endpoint.grant_types),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
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
