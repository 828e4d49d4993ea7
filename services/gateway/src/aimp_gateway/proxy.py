"""The data plane: authenticate, authorize, throttle, route, forward, emit one event.

A plain ASGI app (no FastAPI routing, dependency or telemetry layers on the hot
path; see :mod:`aimp_gateway.asgi`). Every call, whatever its end (401, 403,
404, 429, 5xx or the pod's answer), emits exactly one
:class:`aimp_core.events.RequestEvent`; publishing only enqueues.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aimp_core.auth import INVOKE_PREFIX, ROLE_INVOKER, can_invoke
from aimp_core.errors import (
    AimpError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    problem,
)
from aimp_core.events import TOPIC_REQUESTS, RequestEvent
from aimp_core.kafka import EventPublisher
from aimp_core.registry_client import META_REVISION, Instance
from aimp_core.tracing import current_trace_id, inject_headers
from aimp_gateway.backflow import BackflowSampler
from aimp_gateway.headers import downstream_response_headers, upstream_request_headers
from aimp_gateway.outcomes import CLIENT_CLOSED, outcome_for
from aimp_gateway.outlier import Failure
from aimp_gateway.paths import OIP_ROUTE, SVC_ROUTE, Call, upstream_target
from aimp_gateway.policy import LiveConfig
from aimp_gateway.router import Router
from aimp_gateway.throttle import Throttle, Ticket
from aimp_gateway.tokens import TokenVerifier
from aimp_gateway.upstream import (
    ConnectFailed,
    Upstream,
    UpstreamBroken,
    UpstreamResponse,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Where the dispatcher leaves the parsed :class:`~aimp_gateway.paths.Call` in the scope.
CALL_KEY = "aimp.call"
#: The response header naming the instance that answered (when switched on).
INSTANCE_HEADER = b"x-aimp-instance"
#: RFC 9110 §9.2.2: repeating these has the effect of sending them once, so a call
#: whose connection broke after it was sent may go to another instance.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class ClientGone(Exception):
    """The caller disconnected before its request body arrived."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes with 413."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"the request body is larger than {limit} bytes; send smaller batches"
                )
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _declared_length(scope: Scope) -> int:
    """The body size the caller announced (for calls refused before reading the body)."""
    value = _header(scope, b"content-length")
    return int(value) if value and value.isdigit() else 0


class _Outcome:
    """What one call did, filled in as it goes, for its event."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "client_id",
        "from_upstream",
        "instance",
        "request_body",
        "started",
        "status",
        "ticket",
    )

    def __init__(self) -> None:
        self.client_id = ""
        self.status = 500
        self.from_upstream = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.instance: Instance | None = None
        self.request_body = b""
        #: The throttle's admission (RateLimit headers, concurrency leases) once checked.
        self.ticket: Ticket | None = None
        #: The response has begun; nothing else may be sent but its body.
        self.started = False


class DataPlane:
    """The ASGI app for ``/v2/models/...`` and ``/svc/...``; holds what every call needs."""

    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        throttle: Throttle,
        router: Router,
        upstream: Upstream,
        publisher: EventPublisher,
        max_body_bytes: int,
        instance_header: bool = False,
        backflow: BackflowSampler | None = None,
        config: LiveConfig | None = None,
    ) -> None:
        self.verifier = verifier
        self.throttle = throttle
        self.router = router
        self.upstream = upstream
        self.publisher = publisher
        self.max_body_bytes = max_body_bytes
        self.instance_header = instance_header
        self.backflow = backflow
        #: The live configuration (routes, revisions, fuses, balancing) from the config center.
        self.config = config or LiveConfig()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call: Call = scope[CALL_KEY]
        scope["route"] = OIP_ROUTE if call.oip else SVC_ROUTE
        ts = time.time()
        start = time.perf_counter()
        service = call.name.lower()
        done = _Outcome()
        upstream_ms = 0.0
        try:
            resp = await self._forward(scope, receive, call, service, done)
            # Free the call's concurrency slot before answering: a caller's next call may
            # follow at once.
            await self.throttle.release(done.ticket)
            upstream_ms = resp.upstream_ms
            done.status, done.from_upstream = resp.status, True
            is_head = scope["method"] == "HEAD"
            headers = downstream_response_headers(resp.raw_headers, keep_length=is_head)
            payload = b"" if is_head else resp.body
            if not is_head:
                headers.append((b"content-length", str(len(payload)).encode()))
            if self.instance_header and done.instance is not None:
                instance_id = done.instance.instance_id.encode("latin-1", "replace")
                headers.append((INSTANCE_HEADER, instance_id))
            if done.ticket is not None:
                headers.extend(done.ticket.headers)
            done.started = True
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            done.bytes_out = len(payload)
            if self.backflow is not None:
                self.backflow.offer(
                    scope,
                    ts=ts,
                    service=service,
                    client_id=done.client_id,
                    instance=done.instance,
                    request_body=done.request_body,
                    response=resp,
                )
        except AimpError as exc:
            await self._refuse(scope, receive, send, exc, call.oip, done)
        except ClientGone:
            done.status = CLIENT_CLOSED
        except Exception:
            log.exception("data-plane call failed", extra={"service": service})
            if not done.started:
                error = AimpError("an unexpected error occurred; the request id identifies it")
                await self._refuse(scope, receive, send, error, call.oip, done)
        finally:
            await self.throttle.release(done.ticket)
            self._emit(scope, ts, start, service, done, upstream_ms)

    async def _forward(
        self, scope: Scope, receive: Receive, call: Call, service: str, done: _Outcome
    ) -> UpstreamResponse:
        """Authenticate, authorize, throttle, choose an instance and call it."""
        principal = self.verifier.verify(_header(scope, b"authorization"))
        done.client_id = principal.client_id
        if not can_invoke(principal.roles, service):
            raise Forbidden(
                f"your token's roles do not allow calling '{service}'; ask an admin for "
                f"role {ROLE_INVOKER} or {INVOKE_PREFIX}{service}"
            )
        done.ticket = await self.throttle.check(principal.client_id, service)
        app = call.name.upper()
        router = self.router
        instances = router.table.instances(app)
        if not instances:
            raise self._no_route(service, app, call.oip)
        body = await read_body(receive, self.max_body_bytes)
        done.bytes_in = len(body)
        done.request_body = body
        instance = done.instance = router.balancer.choose(app, instances)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        target = upstream_target(
            raw_path.decode("latin-1"), scope["query_string"].decode("latin-1"), oip=call.oip
        )
        client = scope.get("client")
        headers = upstream_request_headers(
            scope["headers"],
            client_ip=client[0] if client else None,
            request_id=scope["state"]["request_id"],
            traceparent=inject_headers({}).get("traceparent", ""),
        )
        method = scope["method"]
        try:
            return await self._attempt(instance, method, target, headers, body)
        except (ConnectFailed, UpstreamBroken) as exc:
            if isinstance(exc, UpstreamBroken) and method not in IDEMPOTENT_METHODS:
                raise  # the pod may have acted on it: an inference POST is never repeated
            # The failed instance may have just been ejected: choose from the table now.
            other = router.balancer.choose_other(app, router.table.instances(app), instance)
            if other is None:
                raise
            reason = "connect" if isinstance(exc, ConnectFailed) else "broken"
        router.retried(instance, reason)
        done.instance = other
        return await self._attempt(other, method, target, headers, body)

    async def _attempt(
        self,
        instance: Instance,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> UpstreamResponse:
        """One call to one instance, its outcome reported to the router."""
        try:
            resp = await self.upstream.forward(method, instance.base_url + target, headers, body)
        except ConnectFailed as exc:
            self.router.failed(instance, Failure.CONNECT if exc.gone else Failure.GATEWAY)
            raise
        except (UpstreamBroken, UpstreamTimeout):
            self.router.failed(instance, Failure.GATEWAY)
            raise
        self.router.answered(instance, resp.status)
        return resp

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, exc: AimpError, oip: bool, done: _Outcome
    ) -> None:
        done.status = exc.status
        if not done.bytes_in:
            done.bytes_in = _declared_length(scope)
        response = problem(
            exc.status,
            exc.title,
            exc.detail,
            request_id=scope["state"]["request_id"],
            type_=exc.type_,
            headers=exc.headers,
            oip=oip,
        )
        await response(scope, receive, send)
        done.bytes_out = len(response.body)

    def _no_route(self, service: str, app: str, oip: bool) -> AimpError:
        if app in self.router.table.known:
            return ServiceUnavailable(
                f"'{service}' has no instance UP right now (starting, draining or scaled to "
                "zero); retry after the Retry-After delay"
            )
        kind = "model" if oip else "service"
        return NotFound(
            f"{kind} '{service}' is not deployed; deploy it (aimp deploy) or check the name "
            "against the registry"
        )

    def _emit(
        self,
        scope: Scope,
        ts: float,
        start: float,
        service: str,
        done: _Outcome,
        upstream_ms: float,
    ) -> None:
        instance = done.instance
        event = RequestEvent(
            event_id=uuid.uuid4().hex,
            ts=ts,
            trace_id=current_trace_id(),
            request_id=scope["state"]["request_id"],
            client_id=done.client_id,
            service=service,
            revision=instance.metadata.get(META_REVISION, "") if instance else "",
            instance_id=instance.instance_id if instance else "",
            status=done.status,
            latency_ms=(time.perf_counter() - start) * 1000.0,
            upstream_ms=upstream_ms,
            bytes_in=done.bytes_in,
            bytes_out=done.bytes_out,
            outcome=outcome_for(done.status, from_upstream=done.from_upstream),
        )
        self.publisher.publish(TOPIC_REQUESTS, service, event.model_dump())
