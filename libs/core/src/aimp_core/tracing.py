"""W3C trace context: every request joins the caller's trace or starts one.

A pure ASGI middleware reads ``traceparent``, opens a server span, stores the
request id, and writes ``x-request-id`` and ``traceparent`` on every response.
"""

from __future__ import annotations

import uuid
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_configured = False

Scope = MutableMapping[str, Any]


def setup_tracing(service: str) -> None:
    """Install a tracer provider named after the service (once per process)."""
    global _configured
    if _configured:
        return
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": service})))
    _configured = True


def traceparent_of(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add the current trace context (``traceparent``) to outbound headers."""
    _PROPAGATOR.inject(headers)
    return headers


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else ""


class TraceMiddleware:
    """Pure ASGI middleware: trace context in, ``x-request-id`` and ``traceparent`` out."""

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.tracer = trace.get_tracer(service)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"traceparent" or name == b"tracestate":
                carrier[name.decode()] = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
        if not request_id:
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        parent = _PROPAGATOR.extract(carrier)
        span = self.tracer.start_span(
            f"{scope['method']} {scope['path']}", context=parent, kind=SpanKind.SERVER
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        extra = [
            (b"x-request-id", request_id.encode("latin-1")),
            (b"traceparent", traceparent_of(span).encode()),
        ]

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
                span.set_attribute("http.status_code", message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            span.end()
            otel_context.detach(token)
