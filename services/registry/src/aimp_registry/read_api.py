"""Eureka's REST API under ``/eureka``, the reads: applications, delta, instances, VIPs.

As in Eureka, answers are JSON when ``Accept`` mentions JSON and XML otherwise.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from aimp_core.errors import NotFound
from aimp_registry.deps import AcceptHeader, StoreDep
from aimp_registry.documents import render_instance
from aimp_registry.views import applications_body, by_vip, delta_body, full_body
from aimp_registry.wire import respond

router = APIRouter(prefix="/eureka", tags=["eureka"])


@router.get("/apps", summary="Every application and instance")
@router.get("/apps/", include_in_schema=False)
async def applications(store: StoreDep, accept: AcceptHeader = None) -> Response:
    return respond(full_body(store), accept)


@router.get("/apps/delta", summary="Changes of the last few minutes")
async def delta(store: StoreDep, accept: AcceptHeader = None) -> Response:
    return respond(delta_body(store), accept)


@router.get("/apps/{app}", summary="One application")
async def application(app: str, store: StoreDep, accept: AcceptHeader = None) -> Response:
    records = store.application(app)
    if not records:
        raise NotFound(f"no instance of app {app.upper()!r} is registered")
    rendered = applications_body(store, [(app.upper(), records)])
    return respond({"application": rendered["applications"]["application"][0]}, accept)


@router.get("/apps/{app}/{instance_id}", summary="One instance of an application")
async def app_instance(
    app: str, instance_id: str, store: StoreDep, accept: AcceptHeader = None
) -> Response:
    rec = store.instance(app, instance_id)
    if rec is None:
        raise NotFound(
            f"instance {instance_id!r} of app {app.upper()!r} is not registered; register it "
            f"with POST /eureka/apps/{app.upper()}"
        )
    return respond({"instance": render_instance(rec)}, accept)


@router.get("/instances/{instance_id}", summary="One instance, whatever its application")
async def instance(instance_id: str, store: StoreDep, accept: AcceptHeader = None) -> Response:
    rec = store.find_instance(instance_id)
    if rec is None:
        raise NotFound(f"no instance with id {instance_id!r} is registered")
    return respond({"instance": render_instance(rec)}, accept)


@router.get("/vips/{vip}", summary="Instances with this VIP address")
async def vips(vip: str, store: StoreDep, accept: AcceptHeader = None) -> Response:
    return respond(applications_body(store, by_vip(store, "vipAddress", vip)), accept)


@router.get("/svips/{svip}", summary="Instances with this secure VIP address")
async def svips(svip: str, store: StoreDep, accept: AcceptHeader = None) -> Response:
    return respond(applications_body(store, by_vip(store, "secureVipAddress", svip)), accept)
