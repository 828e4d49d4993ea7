"""Eureka's wire formats: read JSON or XML bodies, answer in the format the client accepts.

As in Eureka, a response is JSON only when the ``Accept`` header mentions JSON;
anything else (no header, ``*/*``, XML) gets XML, which is what py-eureka-client
and older Java clients read.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aimp_core.errors import PayloadTooLarge
from aimp_registry import xmlcodec
from aimp_registry.documents import InvalidInstance

XML_MEDIA_TYPE = "application/xml"


def wants_json(accept: str | None) -> bool:
    """Eureka's rule: JSON when the Accept header contains "json", XML otherwise."""
    return accept is not None and "json" in accept.lower()


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it grows past ``limit_bytes``."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit_bytes:
            raise PayloadTooLarge(f"the request body may be at most {limit_bytes} bytes")
    return bytes(body)


def decode_body(body: bytes, content_type: str | None) -> Any:
    """A JSON or XML request body as a dict in Eureka's JSON shape.

    The Content-Type decides; without a usable one, the first character does.
    """
    kind = (content_type or "").lower()
    text = body.lstrip()
    if not text:
        raise InvalidInstance("the request body is empty; send the instance as JSON or XML")
    is_xml = "xml" in kind or ("json" not in kind and text.startswith(b"<"))
    if is_xml:
        try:
            return xmlcodec.loads(body)
        except xmlcodec.XmlError as exc:
            raise InvalidInstance(f"the body is not acceptable XML: {exc}") from None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInstance(f"the body is not valid JSON: {exc}") from None


def respond(payload: dict[str, Any], accept: str | None, status_code: int = 200) -> Response:
    """``payload`` (a one-key dict such as ``{"applications": ...}``) as JSON or XML."""
    if wants_json(accept):
        return JSONResponse(payload, status_code=status_code)
    return Response(xmlcodec.dumps(payload), status_code=status_code, media_type=XML_MEDIA_TYPE)
