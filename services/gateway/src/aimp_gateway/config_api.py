"""``/admin/config/...``: the config center's HTTP API (read: operator and up; write: admin:config;
the default throttle limit also admin:throttle).

Every write stores a new version of the whole configuration, applies it in
this gateway at once and in every other within a second
(:mod:`aimp_gateway.config_sync`), and writes an audit event. Writes may send
``If-Match: <version>`` (the ``ETag`` of a read): when the configuration has
moved on since, the answer is 412 and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from aimp_core.audit import AuditLog
from aimp_core.auth import (
    Principal,
    can_manage_config,
    can_manage_throttle,
    can_read_admin,
    require,
)
from aimp_core.errors import AimpError, BadRequest, Conflict, NotFound, request_id_of
from aimp_gateway.config_schemas import (
    ROUTE_ID_PATTERN,
    SERVICE_PATTERN,
    ConfigDocument,
    ConfigPublic,
    HistoryEntry,
    RollbackRequest,
    RouteEntry,
    RoutePublic,
    RouteWrite,
    ServiceConfigPublic,
    ServiceConfigWrite,
    ThrottleConfigPublic,
    ThrottleConfigWrite,
    VersionPublic,
)
from aimp_gateway.config_store import (
    Change,
    StaleVersion,
    StoredVersion,
    VersionInfo,
    WriteContention,
)
from aimp_gateway.config_sync import ConfigCenter
from aimp_gateway.state import GatewayDep
from aimp_gateway.throttle import effective_default

router = APIRouter(prefix="/admin/config", tags=["config"])
#: Version numbers fit SQL's 32-bit INTEGER (a larger one cannot exist).
MAX_VERSION = 2**31 - 1


class PreconditionFailed(AimpError):
    status, title = 412, "Precondition failed"


def _center(request: Request) -> ConfigCenter:
    center: ConfigCenter = request.app.state.config_center
    return center


def _audit(gw: GatewayDep) -> AuditLog:
    return gw.audit


async def _writer(request: Request, gw: GatewayDep) -> Principal:
    principal = gw.plane.verifier.verify(request.headers.get("authorization"))
    require(can_manage_config(principal.roles), "changing the gateway configuration")
    return principal


async def _throttle_writer(request: Request, gw: GatewayDep) -> Principal:
    principal = gw.plane.verifier.verify(request.headers.get("authorization"))
    allowed = can_manage_config(principal.roles) or can_manage_throttle(principal.roles)
    require(allowed, "changing the gateway's default throttle limit")
    return principal


async def _reader(request: Request, gw: GatewayDep) -> Principal:
    principal = gw.plane.verifier.verify(request.headers.get("authorization"))
    require(can_read_admin(principal.roles), "reading the gateway configuration")
    return principal


CenterDep = Annotated[ConfigCenter, Depends(_center)]
AuditDep = Annotated[AuditLog, Depends(_audit)]
Writer = Annotated[Principal, Depends(_writer)]
ThrottleWriter = Annotated[Principal, Depends(_throttle_writer)]
Reader = Annotated[Principal, Depends(_reader)]
ServiceName = Annotated[str, Path(pattern=SERVICE_PATTERN, examples=["resnet"])]
RouteIdPath = Annotated[str, Path(pattern=ROUTE_ID_PATTERN, examples=["shop-api"])]
Comment = Annotated[
    str, Query(max_length=1000, description="Why the change is made (kept in the history)")
]
IfMatch = Annotated[
    str | None,
    Header(description="The version this change is based on (ETag of a read); 412 if stale"),
]


def _expected(if_match: str | None) -> int | None:
    """The version in an ``If-Match`` header (``5``, ``"5"`` or ``W/"5"``); None when absent."""
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise BadRequest(
            f"If-Match must be a configuration version such as 12 (the ETag of a read), "
            f"not {if_match!r}"
        )
    return int(value)


def _etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


async def _store(
    center: ConfigCenter,
    change: Change,
    mutate: Callable[[ConfigDocument], ConfigDocument],
) -> tuple[StoredVersion, StoredVersion]:
    """Run ``mutate`` on the newest document as a new version; errors say how to fix them."""

    def on_json(document: dict[str, Any]) -> dict[str, Any]:
        changed = mutate(ConfigDocument.model_validate(document))
        try:  # validated whole: e.g. two routes with one id are refused
            return ConfigDocument.model_validate(changed.dump()).dump()
        except ValidationError as exc:
            raise BadRequest(f"the resulting configuration is invalid: {exc}") from None

    try:
        return await center.change(change, on_json)
    except WriteContention as exc:
        raise Conflict(str(exc)) from None
    except StaleVersion as exc:
        raise PreconditionFailed(
            f"the configuration is at version {exc.current}, not {exc.expected}: someone "
            f"changed it since you read it; GET it again, reapply your change and send "
            f"If-Match: {exc.current}"
        ) from None


def _history(info: VersionInfo) -> HistoryEntry:
    return HistoryEntry(
        version=info.version,
        created_at=info.created_at,
        author=info.author,
        action=info.action,
        target=info.target,
        comment=info.comment,
    )


def _record(
    audit: AuditLog,
    request: Request,
    who: Principal,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    audit.record(
        actor=who.subject,
        action=action,
        target=target,
        request_id=request_id_of(request),
        before=before,
        after=after,
    )


# -- the whole configuration ---------------------------------------------------------------


@router.get("", summary="The newest configuration, its version (ETag) and this gateway's")
def get_config(center: CenterDep, _: Reader, response: Response) -> ConfigPublic:
    stored = center.store.latest()
    _etag(response, stored.version)
    return ConfigPublic(
        **ConfigDocument.model_validate(stored.document).model_dump(),
        version=stored.version,
        applied_version=center.applied_version,
    )


@router.put(
    "", summary="Replace the whole configuration (services, routes, throttle) in one version"
)
async def put_config(
    body: ConfigDocument,
    request: Request,
    response: Response,
    center: CenterDep,
    audit: AuditDep,
    who: Writer,
    if_match: IfMatch = None,
    comment: Comment = "",
) -> ConfigPublic:
    change = Change(who.subject, "config.replace", "config", comment, _expected(if_match))
    before, after = await _store(center, change, lambda _: body)
    if after.version != before.version:
        _record(audit, request, who, change.action, "config", before.document, after.document)
    _etag(response, after.version)
    return ConfigPublic(
        **body.model_dump(), version=after.version, applied_version=center.applied_version
    )


# -- services -----------------------------------------------------------------------------


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
    _etag(response, stored.version)
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
    change = Change(who.subject, "config.service.put", target, comment, _expected(if_match))

    def put(doc: ConfigDocument) -> ConfigDocument:
        doc.services[service] = body
        return doc

    before, after = await _store(center, change, put)
    old = before.document["services"].get(service)
    if after.version != before.version:
        _record(audit, request, who, change.action, target, old, body.model_dump(mode="json"))
    if old is None:
        response.status_code = 201
    _etag(response, after.version)
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
    change = Change(who.subject, "config.service.delete", target, comment, _expected(if_match))

    def remove(doc: ConfigDocument) -> ConfigDocument:
        if doc.services.pop(service, None) is None:
            raise NotFound(f"service '{service}' has no configuration; nothing to delete")
        return doc

    before, after = await _store(center, change, remove)
    _record(audit, request, who, change.action, target, before.document["services"][service], None)
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
    _etag(response, stored.version)
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
    change = Change(who.subject, "config.route.put", target, comment, _expected(if_match))
    entry = RouteEntry(**body.model_dump(), route_id=route_id)

    def put(doc: ConfigDocument) -> ConfigDocument:
        doc.routes = [r for r in doc.routes if r.route_id != route_id] + [entry]
        return doc

    before, after = await _store(center, change, put)
    old = next((r for r in before.document["routes"] if r["route_id"] == route_id), None)
    if after.version != before.version:
        _record(audit, request, who, change.action, target, old, entry.model_dump(mode="json"))
    if old is None:
        response.status_code = 201
    _etag(response, after.version)
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
    change = Change(who.subject, "config.route.delete", target, comment, _expected(if_match))

    def remove(doc: ConfigDocument) -> ConfigDocument:
        kept = [r for r in doc.routes if r.route_id != route_id]
        if len(kept) == len(doc.routes):
            raise NotFound(f"route '{route_id}' does not exist; nothing to delete")
        doc.routes = kept
        return doc

    before, after = await _store(center, change, remove)
    old = next(r for r in before.document["routes"] if r["route_id"] == route_id)
    _record(audit, request, who, change.action, target, old, None)
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
    _etag(response, stored.version)
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
    change = Change(who.subject, "config.throttle.put", target, comment, _expected(if_match))

    def put(doc: ConfigDocument) -> ConfigDocument:
        doc.throttle = body
        return doc

    before, after = await _store(center, change, put)
    if after.version != before.version:
        old = before.document.get("throttle")
        _record(audit, request, who, change.action, target, old, body.model_dump(mode="json"))
    _etag(response, after.version)
    return _throttle_public(gw, body, after.version)


# -- history and rollback -----------------------------------------------------------------


@router.get("/history", summary="Stored versions, newest first (who, when, what, why)")
def history(
    center: CenterDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_VERSION, description="Only versions below this")
    ] = None,
) -> list[HistoryEntry]:
    return [_history(info) for info in center.store.history(limit=limit, before=before)]


@router.get("/history/{version}", summary="One stored version with its whole configuration")
def get_version(
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)], center: CenterDep, _: Reader
) -> VersionPublic:
    stored = center.store.get(version)
    if stored is None:
        raise NotFound(
            f"configuration version {version} does not exist; GET /admin/config/history "
            "lists the versions"
        )
    return VersionPublic(
        **_history(stored.info).model_dump(),
        document=ConfigDocument.model_validate(stored.document),
    )


@router.post(
    "/rollback",
    summary="Store a NEW version equal to an earlier one (history is never rewritten)",
)
async def rollback(
    body: RollbackRequest,
    request: Request,
    response: Response,
    center: CenterDep,
    audit: AuditDep,
    who: Writer,
    if_match: IfMatch = None,
) -> ConfigPublic:
    target = f"config/versions/{body.version}"
    comment = body.comment or f"rollback to version {body.version}"
    change = Change(who.subject, "config.rollback", target, comment, _expected(if_match))
    stored = await _version(center, body.version)
    wanted = ConfigDocument.model_validate(stored.document)
    before, after = await _store(center, change, lambda _: wanted)
    if after.version != before.version:
        _record(audit, request, who, change.action, target, before.document, after.document)
    _etag(response, after.version)
    return ConfigPublic(
        **wanted.model_dump(), version=after.version, applied_version=center.applied_version
    )


async def _version(center: ConfigCenter, version: int) -> StoredVersion:
    stored = await run_in_threadpool(center.store.get, version)
    if stored is None:
        raise NotFound(
            f"configuration version {version} does not exist; GET /admin/config/history "
            "lists the versions you can roll back to"
        )
    return stored
