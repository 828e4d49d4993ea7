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


def expected_version(if_match: str | None) -> int | None:
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


def etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


async def store(
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


def record(
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
    etag(response, stored.version)
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
    change = Change(who.subject, "config.replace", "config", comment, expected_version(if_match))
    before, after = await store(center, change, lambda _: body)
    if after.version != before.version:
        record(audit, request, who, change.action, "config", before.document, after.document)
    etag(response, after.version)
    return ConfigPublic(
        **body.model_dump(), version=after.version, applied_version=center.applied_version
    )


# -- services -----------------------------------------------------------------------------


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
    change = Change(who.subject, "config.rollback", target, comment, expected_version(if_match))
    stored = await _version(center, body.version)
    wanted = ConfigDocument.model_validate(stored.document)
    before, after = await store(center, change, lambda _: wanted)
    if after.version != before.version:
        record(audit, request, who, change.action, target, before.document, after.document)
    etag(response, after.version)
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
