"""The data plane: authenticate, authorize, throttle, route, forward, emit one event.

A plain ASGI app (no FastAPI routing, dependency or telemetry layers on the hot
path; see :mod:`aimp_gateway.asgi`). Every call, whatever its end (401, 403,
404, 429, 5xx or the pod's answer), emits exactly one
:class:`aimp_core.events.RequestEvent`; publishing only enqueues.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from aimp_core.auth import INVOKE_PREFIX, ROLE_INVOKER, can_invoke
from aimp_core.errors import (
    AimpError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    problem,
)
from aimp_core.events import TOPIC_REQUESTS
from aimp_core.kafka import EventPublisher
from aimp_core.registry_client import META_REVISION, Instance
from aimp_core.tracing import current_trace_id, current_traceparent
from aimp_gateway import fuse_gate
from aimp_gateway.backflow import BackflowSampler
from aimp_gateway.breaker import Permit
from aimp_gateway.fuses import RETRY_BUDGET_EXHAUSTED, Fuses, ServiceFuses
from aimp_gateway.headers import downstream_response_headers, upstream_request_headers
from aimp_gateway.outcomes import CLIENT_CLOSED, outcome_for, request_event
from aimp_gateway.outlier import Failure
from aimp_gateway.paths import OIP_ROUTE, SVC_ROUTE, Call, upstream_target
from aimp_gateway.policy import LiveConfig, ServicePolicy
from aimp_gateway.router import Candidates, Router
from aimp_gateway.throttle import Throttle, Ticket
from aimp_gateway.tokens import TokenVerifier
from aimp_gateway.upstream import (
    ConnectFailed,
    Upstream,
    UpstreamBroken,
    UpstreamResponse,
    UpstreamStream,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Where the dispatcher leaves the parsed :class:`~aimp_gateway.paths.Call` in the scope.
CALL_KEY = "aimp.call"
#: A sidecar's 503 carries this when its model server refused the connection: not sent.
NOT_SENT_HEADER = b"x-aimp-not-sent"
#: The response header naming the instance that answered (when switched on).
INSTANCE_HEADER = b"x-aimp-instance"
#: RFC 9110 §9.2.2: repeating these has the effect of sending them once, so a call
#: whose connection broke after it was sent may go to another instance.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class _Request:
    """What is sent to an instance, the same for every try."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


class ClientGone(Exception):
    """The caller disconnected before its request body arrived."""


def has_body(scope: Scope) -> bool:
    """Does the request announce a body (RFC 9112 §6.3: only ``Content-Length`` or
    ``Transfer-Encoding`` do; without them the message ended with its head)?"""
    for name, _ in scope["headers"]:
        if name == b"content-length" or name == b"transfer-encoding":
            return True
    return False


async def read_body(receive: Receive, limit: int, *, timeout_s: float | None = None) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes with 413 and a body
    that takes longer than ``timeout_s`` in all (a client trickling it) with 408.

    ``timeout_s=None``: no deadline (for a request without a body, whose message is
    complete already: its one ``receive`` never waits, and a timer would only cost time).
    """
    got = _Received()
    if timeout_s is None:
        return await _receive_all(receive, limit, got)
    try:
        async with asyncio.timeout(timeout_s):
            return await _receive_all(receive, limit, got)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout_s:g} s ({got.size} bytes came); "
            "send it at once, or in smaller calls on a slow link"
        ) from None


class _Received:
    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0


async def _receive_all(receive: Receive, limit: int, got: _Received) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            got.size += len(chunk)
            if got.size > limit:
                raise PayloadTooLarge(
                    f"the request body is larger than {limit} bytes; send smaller batches"
                )
            chunks.append(chunk)
        if not message.get("more_body", False):
            if len(chunks) == 1:
                return chunks[0]
            return b"".join(chunks)


def _not_sent(raw_headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Did the sidecar say the call never reached its model server (``x-aimp-not-sent``)?"""
    return any(key.lower() == NOT_SENT_HEADER for key, _ in raw_headers)


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
        "broken",
        "bytes_in",
        "bytes_out",
        "client_id",
        "fallback",
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
        #: A streamed answer was cut off by the pod after its head was sent.
        self.broken = False
        #: The answer is the service's configured fallback (the fuses refused the call).
        self.fallback = False


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
        body_timeout_s: float | None = None,
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
        self.body_timeout_s = body_timeout_s
        self.instance_header = instance_header
        self.backflow = backflow
        #: The live configuration (routes, revisions, fuses, balancing) from the config center.
        self.config = config or LiveConfig()
        #: Breakers, bulkheads and retry budgets per service, built from the live policies.
        self.fuses = Fuses(clock=time.monotonic)

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
            upstream_ms = resp.upstream_ms
            done.status, done.from_upstream = resp.status, True
            if resp.stream is not None:
                # The call is in flight until its last byte: it keeps its concurrency slot.
                await self._send_stream(scope, receive, send, resp, resp.stream, done)
                return
            # Free the call's concurrency slot before answering: a caller's next call may
            # follow at once.
            await self.throttle.release(done.ticket)
            is_head = scope["method"] == "HEAD"
            headers = downstream_response_headers(resp.raw_headers, keep_length=is_head)
            payload = b"" if is_head else resp.body
            if not is_head:
                headers.append((b"content-length", str(len(payload)).encode()))
            self._add_headers(headers, done)
            done.started = True
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            done.bytes_out = len(payload)
            # Streamed answers are never sampled: their bodies are not held in memory.
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

    def _add_headers(self, headers: list[tuple[bytes, bytes]], done: _Outcome) -> None:
        """The gateway's own response headers: the answering instance, the rate limits."""
        if self.instance_header and done.instance is not None:
            instance_id = done.instance.instance_id.encode("latin-1", "replace")
            headers.append((INSTANCE_HEADER, instance_id))
        if done.ticket is not None:
            headers.extend(done.ticket.headers)

    async def _send_stream(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        resp: UpstreamResponse,
        stream: UpstreamStream,
        done: _Outcome,
    ) -> None:
        """Pass a streamed answer on piece by piece as it arrives, never holding it whole.

        Once the head is sent nothing can be retried or replaced: a break or stall of
        the pod ends the response unfinished (the caller sees a cut body: no last chunk,
        or fewer bytes than the length), is logged, and marks the event's outcome. A
        caller that goes away stops the stream (the pod's connection is dropped).
        """
        gone = asyncio.Event()

        async def watch_caller() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            stream.close()

        watcher = asyncio.create_task(watch_caller())
        try:
            # A known length passes on (a large fixed-length body); without one the server
            # sends chunks.
            headers = downstream_response_headers(resp.raw_headers, keep_length=True)
            self._add_headers(headers, done)
            done.started = True
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            try:
                async for chunk in stream.chunks():
                    if gone.is_set():
                        break
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    done.bytes_out += len(chunk)
            except (UpstreamBroken, UpstreamTimeout) as exc:
                if not gone.is_set():
                    done.broken = True
                    log.warning(
                        "streamed answer cut off after %d bytes: %s",
                        done.bytes_out,
                        exc.detail,
                        extra={"service": scope[CALL_KEY].name.lower()},
                    )
                    return
            if gone.is_set():
                done.status = CLIENT_CLOSED
                return
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
            stream.close()

    async def _forward(
        self, scope: Scope, receive: Receive, call: Call, service: str, done: _Outcome
    ) -> UpstreamResponse:
        """Authenticate, authorize, throttle, route, pass the fuses and call an instance.

        A call the fuses refuse (breaker open, bulkhead full, no instance UP) gets the
        service's fallback answer when its policy has one, else a 503 with Retry-After.
        """
        principal = self.verifier.verify(_header(scope, b"authorization"))
        done.client_id = principal.client_id
        if not can_invoke(principal.roles, service):
            raise Forbidden(
                f"your token's roles do not allow calling '{service}'; ask an admin for "
                f"role {ROLE_INVOKER} or {INVOKE_PREFIX}{service}"
            )
        done.ticket = await self.throttle.check(principal.client_id, service)
        app = call.name.upper()
        # One configuration version for the whole call.
        policy = self.config.snapshot.policy(service)
        pinned = _header(scope, policy.pin_header.lower().encode("latin-1"))
        candidates = self.router.candidates(app, policy, pinned)  # unknown pin: 404
        fuses = self.fuses.of(service, policy)
        try:
            if not candidates.instances:
                raise self._no_route(service, app, call.oip, candidates.revision)
            candidates = fuse_gate.usable(service, candidates, fuses)
            bulkhead, permit = fuse_gate.enter(service, fuses)
        except fuse_gate.Refusal as refusal:
            if policy.fallback is None:
                raise refusal.error from None
            done.fallback = True
            return fuse_gate.fallback_answer(service, policy.fallback, refusal.reason)
        try:
            body = await read_body(
                receive,
                self.max_body_bytes,
                timeout_s=self.body_timeout_s if has_body(scope) else None,
            )
            done.bytes_in = len(body)
            done.request_body = body
            raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
            target = upstream_target(
                raw_path.decode("latin-1"),
                scope["query_string"].decode("latin-1"),
                oip=call.oip,
                routed=call.path,
            )
            client = scope.get("client")
            headers = upstream_request_headers(
                scope["headers"],
                client_ip=client[0] if client else None,
                request_id=scope["state"]["request_id"],
                traceparent=current_traceparent(),
            )
            route_timeout_s = call.route.timeout_s if call.route is not None else None
            timeout_s = route_timeout_s or policy.timeout_s or self.upstream.total_timeout_s
            request = _Request(scope["method"], target, headers, body)
            resp = await self._send(
                app, policy, fuses, candidates, permit, done, request, timeout_s
            )
        except BaseException:
            if permit is not None and fuses.breaker is not None and not permit.used:
                fuses.breaker.release(permit)
            if bulkhead is not None:
                bulkhead.leave()
            raise
        if bulkhead is None:
            return resp
        if resp.stream is None:
            bulkhead.leave()
            return resp
        # A streamed answer is in flight until its last byte: it keeps its place till then.
        return dataclasses.replace(resp, stream=fuse_gate.GatedStream(resp.stream, bulkhead.leave))

    async def _send(
        self,
        app: str,
        policy: ServicePolicy,
        fuses: ServiceFuses,
        candidates: Candidates,
        permit: Permit | None,
        done: _Outcome,
        request: _Request,
        timeout_s: float,
    ) -> UpstreamResponse:
        """Call an instance; on a failure that allows it, retry on another one.

        Retries: only for connect failures (never sent) or idempotent methods whose
        connection broke, at most ``policy.retry.attempts`` tries in all, within the
        call's timeout, the service breaker and the service's retry budget.
        ``permit``: the service breaker's permit for the first try.
        """
        router = self.router
        deadline = time.monotonic() + timeout_s
        fuses.budget.sent()
        instance = router.choose(app, candidates, policy)
        tries = 1
        while True:
            done.instance = instance
            try:
                return await self._attempt(
                    instance, request, fuses, permit, deadline - time.monotonic()
                )
            except (ConnectFailed, UpstreamBroken) as exc:
                connect = isinstance(exc, ConnectFailed)
                if not connect and request.method not in IDEMPOTENT_METHODS:
                    raise  # the pod may have acted on it: an inference POST is never repeated
                if tries >= policy.retry.attempts or time.monotonic() >= deadline:
                    raise
                try:
                    others = fuse_gate.usable(fuses.service, candidates, fuses)
                except fuse_gate.Refusal:
                    raise exc from None
                other = router.choose_other(app, others, instance, policy)
                if other is None:
                    raise
                breaker = fuses.breaker
                permit = breaker.acquire() if breaker is not None else None
                if breaker is not None and permit is None:
                    raise  # the service breaker opened meanwhile: no more tries
                if not fuses.budget.try_retry():
                    if breaker is not None and permit is not None:
                        breaker.release(permit)
                    RETRY_BUDGET_EXHAUSTED.labels(fuses.service).inc()
                    raise
            router.retried(instance, "connect" if connect else "broken")
            instance = other
            tries += 1

    async def _attempt(
        self,
        instance: Instance,
        request: _Request,
        fuses: ServiceFuses,
        permit: Permit | None,
        timeout_s: float,
    ) -> UpstreamResponse:
        """One call to one instance; its outcome goes to the router and the breakers."""
        held = fuse_gate.AttemptPermits()
        if permit is not None and fuses.breaker is not None:
            held.add(fuses.breaker, permit)
        if fuses.instances is not None:
            fuses.instances.prune(self.router.table.up.get(instance.app, ()))
            own = fuses.instances.of(instance)
            own_permit = own.acquire()
            if own_permit is None:  # its trial calls are all taken (usable() said otherwise)
                held.release()
                raise fuse_gate.breaker_error(fuses.service, own)
            held.add(own, own_permit)
        router = self.router
        router.sent(instance)
        start = time.perf_counter()
        try:
            resp = await self.upstream.forward(
                request.method,
                instance.base_url + request.target,
                request.headers,
                request.body,
                timeout_s=timeout_s,
            )
        except (ConnectFailed, UpstreamBroken, UpstreamTimeout) as exc:
            elapsed_s = time.perf_counter() - start
            gone = isinstance(exc, ConnectFailed) and exc.gone
            router.failed(instance, Failure.CONNECT if gone else Failure.GATEWAY, elapsed_s)
            held.ended(failed=True, duration_s=elapsed_s)
            raise
        except BaseException:
            # Cancelled (or a bug): no verdict on the instance, but its load count must end.
            router.answered(instance, CLIENT_CLOSED)
            held.release()
            raise
        latency_s = resp.upstream_ms / 1000.0
        if resp.status == 503 and _not_sent(resp.raw_headers):
            # The pod's sidecar could not reach its model server (crashed, restarting): the
            # call never left the pod, so sending it elsewhere is as safe as after a refused
            # connection, and the pod is out of rotation until it answers again.
            router.failed(instance, Failure.CONNECT, latency_s)
            held.ended(failed=True, duration_s=latency_s)
            raise ConnectFailed(
                f"the service instance {instance.instance_id!r} could not reach its model "
                "server; the call was not sent",
                gone=True,
            )
        router.answered(instance, resp.status, latency_s)
        held.answered(resp.status, latency_s)
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

    def _no_route(self, service: str, app: str, oip: bool, revision: str = "") -> Exception:
        """404 for a service not deployed; a :class:`~aimp_gateway.fuse_gate.Refusal`
        (503 or the fallback) for one with no routable instance now."""
        if app in self.router.table.known:
            which = f"revision '{revision}' of '{service}'" if revision else f"'{service}'"
            return fuse_gate.Refusal(
                "no_instance",
                ServiceUnavailable(
                    f"{which} has no instance UP right now (starting, draining or scaled to "
                    "zero); retry after the Retry-After delay"
                ),
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
        event = request_event(
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
            outcome="upstream_error"
            if done.broken
            else "fallback"
            if done.fallback
            else outcome_for(done.status, from_upstream=done.from_upstream),
        )
        self.publisher.publish(TOPIC_REQUESTS, service, event)
