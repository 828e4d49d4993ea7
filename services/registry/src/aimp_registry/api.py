"""Eureka's REST API under ``/eureka``: registration, heartbeats, status, discovery."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from aimp_core.errors import BadRequest, NotFound
from aimp_registry import metrics
from aimp_registry.documents import (
    parse_metadata,
    parse_registration,
    render_applications,
    render_instance,
)
from aimp_registry.interface import RegistryStore, RenewOutcome
from aimp_registry.model import (
    STATUS_NAMES,
    Clock,
    InstanceRecord,
    Status,
    apps_hashcode,
    parse_status,
)
from aimp_registry.wire import decode_body, read_body, respond

log = logging.getLogger(__name__)

#: Largest registration body accepted; a full instance document is about 2 KiB.
MAX_BODY_BYTES = 64 * 1024


def get_store(request: Request) -> RegistryStore:
    store: RegistryStore = request.app.state.store
    return store


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


StoreDep = Annotated[RegistryStore, Depends(get_store)]
ClockDep = Annotated[Clock, Depends(get_clock)]
AcceptHeader = Annotated[str | None, Header()]
DirtyQuery = Annotated[str | None, Query(alias="lastDirtyTimestamp")]

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


def _applications_body(
    store: RegistryStore,
    records: list[tuple[str, list[InstanceRecord]]],
    hashcode: str | None = None,
) -> dict[str, Any]:
    statuses = (r.status for _, items in records for r in items)
    return render_applications(
        store.version,
        apps_hashcode(statuses) if hashcode is None else hashcode,
        [(name, [render_instance(r) for r in items]) for name, items in records],
    )


def _by_vip(store: RegistryStore, field: str, vip: str) -> list[tuple[str, list[InstanceRecord]]]:
    out = []
    for name, items in store.applications():
        chosen = [
            r
            for r in items
            if vip in (v.strip() for v in str(r.document.get(field, "")).split(","))
        ]
        if chosen:
            out.append((name, chosen))
    return out


# -- writes -------------------------------------------------------------------------------


@router.post("/apps/{app}", status_code=204, summary="Register an instance (JSON or XML)")
async def register(app: str, request: Request, store: StoreDep, clock: ClockDep) -> Response:
    body = await read_body(request, MAX_BODY_BYTES)
    registration = parse_registration(
        decode_body(body, request.headers.get("content-type")), app, now_ms=clock()
    )
    before = store.version
    rec = store.register(registration)
    metrics.count("register")
    _published(store, before)
    log.info(
        "registered",
        extra={"app": rec.app, "instance_id": rec.instance_id, "status": rec.status.value},
    )
    return Response(status_code=204)


@router.put("/apps/{app}/{instance_id}", summary="Heartbeat (renew the lease)")
async def renew(
    app: str,
    instance_id: str,
    store: StoreDep,
    last_dirty: DirtyQuery = None,
    status: str | None = None,
    overriddenstatus: str | None = None,
) -> Response:
    reported = _status_param(status, "status")
    _status_param(overriddenstatus, "overriddenstatus")  # validated; only replicas use it
    before = store.version
    outcome = store.renew(
        app, instance_id, reported_status=reported, client_dirty_ms=_dirty_param(last_dirty)
    )
    metrics.count("renew", "ok" if outcome == RenewOutcome.RENEWED else outcome.value)
    _published(store, before)
    if outcome == RenewOutcome.NOT_FOUND:
        raise _not_registered(app, instance_id)
    if outcome == RenewOutcome.CLIENT_NEWER:
        raise NotFound(
            f"instance {instance_id!r} sent a newer lastDirtyTimestamp than the registry "
            f"holds; register it again with POST /eureka/apps/{app.upper()}"
        )
    return Response(status_code=200)


@router.delete("/apps/{app}/{instance_id}", summary="Cancel (deregister) an instance")
async def cancel(app: str, instance_id: str, store: StoreDep) -> Response:
    before = store.version
    found = store.cancel(app, instance_id)
    metrics.count("cancel", "ok" if found else "not_found")
    _published(store, before)
    if not found:
        raise _not_registered(app, instance_id)
    log.info("cancelled", extra={"app": app.upper(), "instance_id": instance_id})
    return Response(status_code=200)


@router.put("/apps/{app}/{instance_id}/status", summary="Override an instance's status")
async def set_status(
    app: str,
    instance_id: str,
    store: StoreDep,
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
    log.info("status override removed", extra={"app": app.upper(), "instance_id": instance_id})
    return Response(status_code=200)


@router.put("/apps/{app}/{instance_id}/metadata", summary="Set metadata (?key=value&...)")
async def update_metadata(
    app: str, instance_id: str, request: Request, store: StoreDep
) -> Response:
    items = parse_metadata(dict(request.query_params), "query parameter")
    before = store.version
    found = store.update_metadata(app, instance_id, items)
    metrics.count("metadata", "ok" if found else "not_found")
    _published(store, before)
    if not found:
        raise _not_registered(app, instance_id)
    return Response(status_code=200)


# -- reads --------------------------------------------------------------------------------


@router.get("/apps", summary="Every application and instance")
@router.get("/apps/", include_in_schema=False)
async def applications(store: StoreDep, accept: AcceptHeader = None) -> Response:
    return respond(_applications_body(store, store.applications(), store.hashcode()), accept)


@router.get("/apps/delta", summary="Changes of the last few minutes")
async def delta(store: StoreDep, accept: AcceptHeader = None) -> Response:
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for change in store.recent_changes():
        latest.pop((change.app, change.instance_id), None)  # keep the newest, in change order
        latest[(change.app, change.instance_id)] = change.snapshot
    grouped: dict[str, list[dict[str, Any]]] = {}
    for (app_name, _), snapshot in latest.items():
        grouped.setdefault(app_name, []).append(snapshot)
    body = render_applications(store.version, store.hashcode(), sorted(grouped.items()))
    return respond(body, accept)


@router.get("/apps/{app}", summary="One application")
async def application(app: str, store: StoreDep, accept: AcceptHeader = None) -> Response:
    records = store.application(app)
    if not records:
        raise NotFound(f"no instance of app {app.upper()!r} is registered")
    rendered = _applications_body(store, [(app.upper(), records)])
    return respond({"application": rendered["applications"]["application"][0]}, accept)


@router.get("/apps/{app}/{instance_id}", summary="One instance of an application")
async def app_instance(
    app: str, instance_id: str, store: StoreDep, accept: AcceptHeader = None
) -> Response:
    rec = store.instance(app, instance_id)
    if rec is None:
        raise _not_registered(app, instance_id)
    return respond({"instance": render_instance(rec)}, accept)


@router.get("/instances/{instance_id}", summary="One instance, whatever its application")
async def instance(instance_id: str, store: StoreDep, accept: AcceptHeader = None) -> Response:
    rec = store.find_instance(instance_id)
    if rec is None:
        raise NotFound(f"no instance with id {instance_id!r} is registered")
    return respond({"instance": render_instance(rec)}, accept)


@router.get("/vips/{vip}", summary="Instances with this VIP address")
async def vips(vip: str, store: StoreDep, accept: AcceptHeader = None) -> Response:
    return respond(_applications_body(store, _by_vip(store, "vipAddress", vip)), accept)


@router.get("/svips/{svip}", summary="Instances with this secure VIP address")
async def svips(svip: str, store: StoreDep, accept: AcceptHeader = None) -> Response:
    return respond(_applications_body(store, _by_vip(store, "secureVipAddress", svip)), accept)
