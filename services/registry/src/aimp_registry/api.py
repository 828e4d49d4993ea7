"""Eureka's REST API under ``/eureka``, the writes: register, renew, cancel, status, metadata.

Each successful client-originated write is handed to the replicator (never
awaited); writes carrying ``x-netflix-discovery-replication: true`` come from a
peer and are applied without being forwarded again.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from starlette.responses import Response

from aimp_core.errors import BadRequest, NotFound
from aimp_registry import metrics
from aimp_registry.deps import (
    AcceptHeader,
    ClockDep,
    DirtyQuery,
    ForwarderDep,
    MeterDep,
    StoreDep,
)
from aimp_registry.documents import parse_metadata, parse_registration, render_instance
from aimp_registry.interface import RegistryStore, RenewOutcome
from aimp_registry.model import STATUS_NAMES, Status, parse_status
from aimp_registry.peers import Action, Task
from aimp_registry.wire import decode_body, read_body, respond

log = logging.getLogger(__name__)

#: Largest registration body accepted; a full instance document is about 2 KiB.
MAX_BODY_BYTES = 64 * 1024

router = APIRouter(prefix="/eureka", tags=["eureka"])


# -- helpers ----------------------------------------------------------------------------


def _status_param(value: str | None, name: str) -> Status | None:
    if value is None or value == "":
        return None
    status = parse_status(value)
    if status is None:
        raise BadRequest(f"query parameter {name} must be one of {STATUS_NAMES}, got {value!r}")
    return status


def _dirty_param(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(
            f"query parameter lastDirtyTimestamp must be epoch milliseconds, got {value[:40]!r}"
        ) from None


def _not_registered(app: str, instance_id: str) -> NotFound:
    return NotFound(
        f"instance {instance_id!r} of app {app.upper()!r} is not registered; register it "
        f"with POST /eureka/apps/{app.upper()}"
    )


def _published(store: RegistryStore, version_before: int) -> None:
    """Refresh the instance gauge when a write changed the registry."""
    if store.version != version_before:
        metrics.publish_instances(store.status_counts())


def _dirty_of(store: RegistryStore, app: str, instance_id: str) -> dict[str, str]:
    rec = store.instance(app, instance_id)
    return {} if rec is None else {"lastDirtyTimestamp": str(rec.last_dirty_ms)}


# -- writes -------------------------------------------------------------------------------


@router.post("/apps/{app}", status_code=204, summary="Register an instance (JSON or XML)")
async def register(
    app: str, request: Request, store: StoreDep, clock: ClockDep, fwd: ForwarderDep
) -> Response:
    body = await read_body(request, MAX_BODY_BYTES)
    registration = parse_registration(
        decode_body(body, request.headers.get("content-type")), app, now_ms=clock()
    )
    before = store.version
    rec = store.register(registration)
    metrics.count("register")
    _published(store, before)
    fwd.forward_register(rec.app, rec.instance_id)
    log.info(
        "registered",
        extra={
            "app": rec.app,
            "instance_id": rec.instance_id,
            "status": rec.status.value,
            "replicated": fwd.replicated,
        },
    )
    return Response(status_code=204)


@router.put("/apps/{app}/{instance_id}", summary="Heartbeat (renew the lease)")
async def renew(
    app: str,
    instance_id: str,
    store: StoreDep,
    clock: ClockDep,
    meter: MeterDep,
    fwd: ForwarderDep,
    accept: AcceptHeader = None,
    last_dirty: DirtyQuery = None,
    status: str | None = None,
    overriddenstatus: str | None = None,
) -> Response:
    reported = _status_param(status, "status")
    override = _status_param(overriddenstatus, "overriddenstatus")
    before = store.version
    outcome = store.renew(
        app,
        instance_id,
        reported_status=reported,
        client_dirty_ms=_dirty_param(last_dirty),
        replicated=fwd.replicated,
    )
    metrics.count("renew", "ok" if outcome == RenewOutcome.RENEWED else outcome.value)
    if outcome != RenewOutcome.NOT_FOUND:
        meter.record(clock())
    rec = store.instance(app, instance_id)
    if (
        fwd.replicated
        and outcome == RenewOutcome.RENEWED
        and rec is not None
        and override is not None
        and override != Status.UNKNOWN
        and rec.overridden_status != override
    ):
        # Eureka: a peer's heartbeat carries the override it holds; keep it here too.
        store.set_status_override(app, instance_id, override)
    _published(store, before)
    if outcome == RenewOutcome.NOT_FOUND or rec is None:
        raise _not_registered(app, instance_id)
    if outcome == RenewOutcome.CLIENT_NEWER:
        raise NotFound(
            f"instance {instance_id!r} sent a newer lastDirtyTimestamp than the registry "
            f"holds; register it again with POST /eureka/apps/{app.upper()}"
        )
    if outcome == RenewOutcome.SERVER_NEWER:
        return respond({"instance": render_instance(rec)}, accept, status_code=409)
    fwd.forward(
        Task(
            Action.HEARTBEAT,
            rec.app,
            rec.instance_id,
            params={
                "status": rec.status.value,
                "overriddenstatus": rec.overridden_status.value,
                "lastDirtyTimestamp": str(rec.last_dirty_ms),
            },
        )
    )
    return Response(status_code=200)


@router.delete("/apps/{app}/{instance_id}", summary="Cancel (deregister) an instance")
async def cancel(app: str, instance_id: str, store: StoreDep, fwd: ForwarderDep) -> Response:
    before = store.version
    found = store.cancel(app, instance_id)
    metrics.count("cancel", "ok" if found else "not_found")
    _published(store, before)
    if not found:
        raise _not_registered(app, instance_id)
    fwd.forward(Task(Action.CANCEL, app.upper(), instance_id))
    log.info(
        "cancelled",
        extra={"app": app.upper(), "instance_id": instance_id, "replicated": fwd.replicated},
    )
    return Response(status_code=200)


@router.put("/apps/{app}/{instance_id}/status", summary="Override an instance's status")
async def set_status(
    app: str,
    instance_id: str,
    store: StoreDep,
    fwd: ForwarderDep,
    value: str | None = None,
    last_dirty: DirtyQuery = None,
) -> Response:
    status = _status_param(value, "value")
    if status is None or status == Status.UNKNOWN:
        raise BadRequest(
            "query parameter value must name the status to pin: UP, DOWN, STARTING or "
            "OUT_OF_SERVICE (to remove an override, DELETE this path)"
        )
    before = store.version
    found = store.set_status_override(
        app, instance_id, status, client_dirty_ms=_dirty_param(last_dirty)
    )
    metrics.count("status_override", "ok" if found else "not_found")
    _published(store, before)
    if not found:
        raise _not_registered(app, instance_id)
    params = {"value": status.value, **_dirty_of(store, app, instance_id)}
    fwd.forward(Task(Action.STATUS, app.upper(), instance_id, params=params))
    log.info(
        "status overridden",
        extra={"app": app.upper(), "instance_id": instance_id, "status": status.value},
    )
    return Response(status_code=200)


@router.delete("/apps/{app}/{instance_id}/status", summary="Remove a status override")
async def delete_status(
    app: str,
    instance_id: str,
    store: StoreDep,
    fwd: ForwarderDep,
    value: str | None = None,
    last_dirty: DirtyQuery = None,
) -> Response:
    new_status = _status_param(value, "value") or Status.UNKNOWN
    before = store.version
    found = store.delete_status_override(
        app, instance_id, new_status=new_status, client_dirty_ms=_dirty_param(last_dirty)
    )
    metrics.count("status_override_delete", "ok" if found else "not_found")
    _published(store, before)
    if not found:
        raise _not_registered(app, instance_id)
    params = {"value": new_status.value, **_dirty_of(store, app, instance_id)}
    fwd.forward(Task(Action.DELETE_STATUS, app.upper(), instance_id, params=params))
    log.info("status override removed", extra={"app": app.upper(), "instance_id": instance_id})
    return Response(status_code=200)


@router.put("/apps/{app}/{instance_id}/metadata", summary="Set metadata (?key=value&...)")
async def update_metadata(
    app: str, instance_id: str, request: Request, store: StoreDep, fwd: ForwarderDep
) -> Response:
    items = parse_metadata(dict(request.query_params), "query parameter")
    before = store.version
    found = store.update_metadata(app, instance_id, items)
    metrics.count("metadata", "ok" if found else "not_found")
    _published(store, before)
    if not found:
        raise _not_registered(app, instance_id)
    fwd.forward(Task(Action.METADATA, app.upper(), instance_id, params=items))
    return Response(status_code=200)
