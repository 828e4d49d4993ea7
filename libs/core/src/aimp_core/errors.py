"""Our own exceptions, mapped to HTTP responses in one place.

Everywhere else raises :class:`AimpError` subclasses; :func:`install_error_handlers`
turns them into RFC 9457 problem+json, or into the Open Inference Protocol's
``{"error": "..."}`` under ``/v2``, so Triton clients show the message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class AimpError(Exception):
    """Base of every error a client may see; ``detail`` must never hold a secret."""

    status: int = 500
    title: str = "Internal server error"
    type_: str = "about:blank"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})


class BadRequest(AimpError):
    status, title = 400, "Bad request"


class Unauthorized(AimpError):
    status, title = 401, "Unauthorized"

    def __init__(self, detail: str, *, error: str = "invalid_token") -> None:
        super().__init__(
            detail,
            headers={"WWW-Authenticate": f'Bearer error="{error}", error_description="{detail}"'},
        )


class Forbidden(AimpError):
    status, title = 403, "Forbidden"


class NotFound(AimpError):
    status, title = 404, "Not found"


class RequestTimeout(AimpError):
    status, title = 408, "Request timeout"


class Conflict(AimpError):
    status, title = 409, "Conflict"


class PayloadTooLarge(AimpError):
    status, title = 413, "Payload too large"


class TooManyRequests(AimpError):
    status, title = 429, "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: float, **headers: str) -> None:
        super().__init__(detail, headers={"Retry-After": _retry_after(retry_after_s), **headers})


class BadGateway(AimpError):
    status, title = 502, "Bad gateway"


class ServiceUnavailable(AimpError):
    status, title = 503, "Service unavailable"

    def __init__(self, detail: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(detail, headers={"Retry-After": _retry_after(retry_after_s)})


class GatewayTimeout(AimpError):
    status, title = 504, "Gateway timeout"


def _retry_after(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client never retries too early."""
    whole = int(seconds)
    return str(max(1, whole + (1 if seconds > whole else 0)))


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return str(rid) if rid else ""


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    request_id: str,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    oip: bool = False,
) -> JSONResponse:
    """Build the error response: problem+json, or ``{"error"}`` for the inference protocol."""
    if oip:
        return JSONResponse({"error": detail}, status_code=status, headers=dict(headers or {}))
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def install_error_handlers(app: FastAPI, *, oip_prefix: str | None = "/v2") -> None:
    """Map our errors, HTTP errors and validation errors to responses, in one place."""

    def is_oip(request: Request) -> bool:
        return oip_prefix is not None and request.url.path.startswith(oip_prefix)

    @app.exception_handler(AimpError)
    async def _aimp(request: Request, exc: AimpError) -> JSONResponse:
        return problem(
            exc.status,
            exc.title,
            exc.detail,
            request_id=request_id_of(request),
            type_=exc.type_,
            headers=exc.headers,
            oip=is_oip(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(
            exc.status_code,
            _title_for(exc.status_code),
            str(exc.detail),
            request_id=request_id_of(request),
            headers=exc.headers,
            oip=is_oip(request),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return problem(
            422,
            "Invalid request",
            "; ".join(parts) or "the request does not match the schema",
            request_id=request_id_of(request),
            oip=is_oip(request),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem(
            500,
            "Internal server error",
            "an unexpected error occurred; the request id identifies it in the logs",
            request_id=request_id_of(request),
            oip=is_oip(request),
        )


def _title_for(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
