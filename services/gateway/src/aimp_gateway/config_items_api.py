"""Admin API of the config center, one document at a time: services, routes, throttle.

The whole-configuration endpoints, history and rollback, and the dependencies every
config route shares (roles, If-Match, auditing) are in :mod:`aimp_gateway.config_api`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from aimp_core.errors import NotFound
from aimp_gateway.config_api import (
    AuditDep,
    CenterDep,
    Comment,
    IfMatch,
    Reader,
    RouteIdPath,
    ServiceName,
    ThrottleWriter,
    Writer,
    etag,
    expected_version,
    record,
    store,
)
from aimp_gateway.config_schemas import (
    ConfigDocument,
    RouteEntry,
    RoutePublic,
    RouteWrite,
    ServiceConfigPublic,
    ServiceConfigWrite,
    ThrottleConfigPublic,
    ThrottleConfigWrite,
)
from aimp_gateway.config_store import Change
from aimp_gateway.state import GatewayDep
from aimp_gateway.throttle import effective_default

router = APIRouter(prefix="/admin/config", tags=["config"])


def _service_public(name: str, config: ServiceConfigWrite, version: int) -> ServiceConfigPublic:
    return ServiceConfigPublic(**config.model_dump(), service=name, version=version)


@router.get("/services/{service}", summary="One service's configuration")
def get_service(
    service: ServiceName, center: CenterDep, _: Reader, response: Response
) -> ServiceConfigPublic:
    stored = center.store.latest()
    config = ConfigDocument.model_validate(stored.document).services.get(service)
    if config is None:
        raise NotFound(
            f"service '{service}' has no configuration (it runs with the defaults); "
            f"PUT /admin/config/services/{service} sets one"
        )
    etag(response, stored.version)
    return _service_public(service, config, stored.version)


@router.put(
    "/services/{service}",
    summary="Create or replace one service's configuration (201 when created)",
    responses={201: {"description": "Created"}, 412: {"description": "If-Match is stale"}},
)
async def put_service(
    service: ServiceName,
    body: ServiceConfigWrite,
    request: Request,
    response: Response,
    center: CenterDep,
    audit: AuditDep,
    who: Writer,
    if_match: IfMatch = None,
    comment: Comment = "",
) -> ServiceConfigPublic:
    target = f"config/services/{service}"
    change = Change(who.subject, "config.service.put", target, comment, expected_version(if_match))

    def put(doc: ConfigDocument) -> ConfigDocument:
        doc.services[service] = body
        return doc

    before, after = await store(center, change, put)
    old = before.document["services"].get(service)
    if after.version != before.version:
        record(audit, request, who, change.action, target, old, body.model_dump(mode="json"))
    if old is None:
        response.status_code = 201
    etag(response, after.version)
    return _service_public(service, body, after.version)


@router.delete(
    "/services/{service}",
    status_code=204,
    summary="Remove a service's configuration (it runs with the defaults again)",
)
async def delete_service(
    service: ServiceName,
    request: Request,
    center: CenterDep,
    audit: AuditDep,
    who: Writer,
    if_match: IfMatch = None,
    comment: Comment = "",
) -> Response:
    target = f"config/services/{service}"
    change = Change(
        who.subject, "config.service.delete", target, comment, expected_version(if_match)
    )

    def remove(doc: ConfigDocument) -> ConfigDocument:
        if doc.services.pop(service, None) is None:
            raise NotFound(f"service '{service}' has no configuration; nothing to delete")
        return doc

    before, after = await store(center, change, remove)
    record(audit, request, who, change.action, target, before.document["services"][service], None)
    return Response(status_code=204, headers={"ETag": f'"{after.version}"'})


# -- routes -------------------------------------------------------------------------------


def _route_public(route_id: str, route: RouteWrite, version: int) -> RoutePublic:
    fields = route.model_dump(exclude={"route_id"})
    return RoutePublic(**fields, route_id=route_id, version=version)


@router.get("/routes/{route_id}", summary="One route")
def get_route(
    route_id: RouteIdPath, center: CenterDep, _: Reader, response: Response
) -> RoutePublic:
    stored = center.store.latest()
    route = ConfigDocument.model_validate(stored.document).route(route_id)
    if route is None:
        raise NotFound(f"route '{route_id}' does not exist; GET /admin/config lists the routes")
    etag(response, stored.version)
    return _route_public(route_id, route, stored.version)


@router.put(
    "/routes/{route_id}",
    summary="Create or replace a route (201 when created)",
    responses={201: {"description": "Created"}, 412: {"description": "If-Match is stale"}},
)
async def put_route(
    route_id: RouteIdPath,
    body: RouteWrite,
    request: Request,
    response: Response,
    center: CenterDep,
    audit: AuditDep,
    who: Writer,
    if_match: IfMatch = None,
    comment: Comment = "",
) -> RoutePublic:
    target = f"config/routes/{route_id}"
    change = Change(who.subject, "config.route.put", target, comment, expected_version(if_match))
    entry = RouteEntry(**body.model_dump(), route_id=route_id)

    def put(doc: ConfigDocument) -> ConfigDocument:
        doc.routes = [r for r in doc.routes if r.route_id != route_id] + [entry]
        return doc

    before, after = await store(center, change, put)
    old = next((r for r in before.document["routes"] if r["route_id"] == route_id), None)
    if after.version != before.version:
        record(audit, request, who, change.action, target, old, entry.model_dump(mode="json"))
    if old is None:
        response.status_code = 201
    etag(response, after.version)
    return _route_public(route_id, body, after.version)


@router.delete("/routes/{route_id}", status_code=204, summary="Remove a route")
async def delete_route(
    route_id: RouteIdPath,
    request: Request,
    center: CenterDep,
    audit: AuditDep,
    who: Writer,
    if_match: IfMatch = None,
    comment: Comment = "",
) -> Response:
    target = f"config/routes/{route_id}"
    change = Change(who.subject, "config.route.delete", target, comment, expected_version(if_match))

    def remove(doc: ConfigDocument) -> ConfigDocument:
        kept = [r for r in doc.routes if r.route_id != route_id]
        if len(kept) == len(doc.routes):
            raise NotFound(f"route '{route_id}' does not exist; nothing to delete")
        doc.routes = kept
        return doc

    before, after = await store(center, change, remove)
    old = next(r for r in before.document["routes"] if r["route_id"] == route_id)
    record(audit, request, who, change.action, target, old, None)
    return Response(status_code=204, headers={"ETag": f'"{after.version}"'})


# -- the default throttle limit -----------------------------------------------------------


def _throttle_public(
    gw: GatewayDep, config: ThrottleConfigWrite, version: int
) -> ThrottleConfigPublic:
    effective = effective_default(gw.plane.throttle.base_default, config.to_policy())
    return ThrottleConfigPublic(
        **config.model_dump(),
        version=version,
        effective_rate_per_s=effective.rate,
        effective_burst=effective.burst,
        effective_on_redis_down=effective.on_redis_down,
    )


@router.get(
    "/throttle",
    summary="The default limit of clients no throttle policy or plan covers",
)
def get_throttle(
    center: CenterDep, gw: GatewayDep, _: Reader, response: Response
) -> ThrottleConfigPublic:
    stored = center.store.latest()
    config = ConfigDocument.model_validate(stored.document).throttle
    etag(response, stored.version)
    return _throttle_public(gw, config, stored.version)


@router.put(
    "/throttle",
    summary="Set the default limit (fields left out keep this gateway's settings)",
    responses={412: {"description": "If-Match is stale"}},
)
async def put_throttle(
    body: ThrottleConfigWrite,
    request: Request,
    response: Response,
    center: CenterDep,
    audit: AuditDep,
    gw: GatewayDep,
    who: ThrottleWriter,
    if_match: IfMatch = None,
    comment: Comment = "",
) -> ThrottleConfigPublic:
    target = "config/throttle"
    change = Change(who.subject, "config.throttle.put", target, comment, expected_version(if_match))

    def put(doc: ConfigDocument) -> ConfigDocument:
        doc.throttle = body
        return doc

    before, after = await store(center, change, put)
    if after.version != before.version:
        old = before.document.get("throttle")
        record(audit, request, who, change.action, target, old, body.model_dump(mode="json"))
    etag(response, after.version)
    return _throttle_public(gw, body, after.version)


# -- history and rollback -----------------------------------------------------------------
