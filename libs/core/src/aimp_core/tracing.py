"""W3C trace context: every request joins the caller's trace or starts one.

A pure ASGI middleware reads ``traceparent``, stores the request id, and writes
``x-request-id`` and ``traceparent`` on every response.

Spans are only made when something would receive them: after
:func:`export_spans` (a span processor, e.g. an OTLP exporter) the middleware
opens an OpenTelemetry server span per request. Without one (the default) it
takes the lean path: it parses ``traceparent`` itself and keeps the call's
context (trace id, a new span id, the sampled flag) in a context variable, with
the same headers out and the same :func:`current_trace_id` and
:func:`inject_headers` for the code below it, for about a tenth of a span's CPU
(a span object, its attributes and two context switches per call were ~6 % of
the gateway's time per call).
"""

from __future__ import annotations

import random
import re
from collections.abc import MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_configured = False
#: A span processor was added: requests get real OpenTelemetry spans.
_exporting = False

Scope = MutableMapping[str, Any]

#: W3C Trace Context §3.2 (the same pattern OpenTelemetry's propagator uses).
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$"
)
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
#: Longest tracestate passed on (W3C: 32 members of at most 256 characters; 512 is the
#: recommended minimum a vendor must propagate).
_MAX_TRACESTATE = 512


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The current call's place in its trace when no span is recorded."""

    trace_id: str
    span_id: str
    sampled: bool
    tracestate: str = ""

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    @classmethod
    def child_of(cls, traceparent: str | None, tracestate: str | None = None) -> TraceContext:
        """A new span in the caller's trace, or a new trace when ``traceparent`` is absent
        or invalid (as OpenTelemetry's parent-based sampler decides: the caller's sampled
        flag, else sampled)."""
        span_id = f"{random.getrandbits(64) or 1:016x}"
        parent = parse_traceparent(traceparent) if traceparent else None
        if parent is None:
            return cls(f"{random.getrandbits(128) or 1:032x}", span_id, True)
        trace_id, sampled = parent
        return cls(trace_id, span_id, sampled, (tracestate or "")[:_MAX_TRACESTATE])


_CURRENT: ContextVar[TraceContext | None] = ContextVar("aimp_trace_context", default=None)


def parse_traceparent(value: str) -> tuple[str, bool] | None:
    """(trace id, sampled) of a valid ``traceparent``; None for an invalid one."""
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, bool(int(flags, 16) & 1)


def setup_tracing(service: str) -> None:
    """Install a tracer provider named after the service (once per process)."""
    global _configured
    if _configured:
        return
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": service})))
    _configured = True


def export_spans(processor: SpanProcessor) -> None:
    """Send every request's span to ``processor`` (after :func:`setup_tracing`); from now on
    middlewares created afterwards record OpenTelemetry spans."""
    global _exporting
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        raise RuntimeError("call setup_tracing(service) before export_spans()")
    provider.add_span_processor(processor)
    _exporting = True


def traceparent_of(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add the current trace context (``traceparent``) to outbound headers."""
    lean = _CURRENT.get()
    if lean is None:
        _PROPAGATOR.inject(headers)
        return headers
    headers["traceparent"] = lean.traceparent
    if lean.tracestate:
        headers["tracestate"] = lean.tracestate
    return headers


def current_traceparent() -> str:
    """The current call's ``traceparent`` ("" outside a traced call)."""
    lean = _CURRENT.get()
    if lean is not None:
        return lean.traceparent
    return inject_headers({}).get("traceparent", "")


def current_trace_id() -> str:
    lean = _CURRENT.get()
    if lean is not None:
        return lean.trace_id
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else ""


def _new_request_id() -> str:
    return f"{random.getrandbits(128):032x}"


class TraceMiddleware:
    """Pure ASGI middleware: trace context in, ``x-request-id`` and ``traceparent`` out."""

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.tracer = trace.get_tracer(service)
        #: Record OpenTelemetry spans (a span processor was configured before this).
        self.spans = _exporting

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traceparent: str | None = None
        tracestate: str | None = None
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
        if not request_id:
            request_id = _new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        if self.spans:
            await self._with_span(scope, receive, send, request_id, traceparent, tracestate)
            return
        ctx = TraceContext.child_of(traceparent, tracestate)
        extra = (
            (b"x-request-id", request_id.encode("latin-1")),
            (b"traceparent", ctx.traceparent.encode()),
        )

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        token = _CURRENT.set(ctx)
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            _CURRENT.reset(token)

    async def _with_span(
        self,
        scope: Scope,
        receive: Any,
        send: Any,
        request_id: str,
        traceparent: str | None,
        tracestate: str | None,
    ) -> None:
        carrier: dict[str, str] = {}
        if traceparent is not None:
            carrier["traceparent"] = traceparent
        if tracestate is not None:
            carrier["tracestate"] = tracestate
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
