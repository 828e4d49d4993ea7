"""HTTP routes of data backflow: sampling rates and redaction per service, and export."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator

from aimp_core.auth import Principal, can_operate, require
from aimp_core.errors import BadRequest, NotFound

from .auth import Reader, current_principal
from .backflow_app import Backflow
from .backflow_domain import SERVICE_NAME, check_redact_path
from .backflow_files import gzip_stream, iter_lines
from .backflow_store import ServiceBackflow
from .domain import parse_instant

router = APIRouter(tags=["backflow"])


def _backflow(request: Request) -> Backflow:
    backflow: Backflow = request.app.state.backflow
    return backflow


async def _operator(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    require(can_operate(principal.roles), "changing backflow sampling (operator or admin)")
    return principal


BackflowDep = Annotated[Backflow, Depends(_backflow)]
Operator = Annotated[Principal, Depends(_operator)]


def _service(name: str) -> str:
    if not SERVICE_NAME.fullmatch(name) or ".." in name:
        raise BadRequest(
            f"service {name[:64]!r} is not a service name: lower-case letters, digits, "
            "'.', '_' and '-', starting with a letter or digit"
        )
    return name


ServiceName = Annotated[str, Path(max_length=128, description="The service's name.")]


class BackflowUpdate(BaseModel):
    """``PUT`` body: the rate, and optionally the redaction list."""

    rate_percent: float = Field(ge=0, le=100, description="Share of calls sampled, 0-100.")
    redact_fields: list[str] | None = Field(
        default=None,
        max_length=100,
        description="Paths removed before writing, e.g. 'request.body.user.email' or "
        "'response.body.outputs.*.data'; omitted keeps the stored list, [] clears it.",
    )

    @field_validator("redact_fields")
    @classmethod
    def _paths(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [check_redact_path(p) for p in value]


class BackflowPublic(BaseModel):
    service: str
    rate_percent: float
    redact_fields: list[str]
    updated_at: float = Field(description="Unix seconds of the last change.")
    updated_by: str = Field(description="The client that made it.")
    applied: bool | None = Field(
        default=None,
        description="After a change: whether it reached Redis (gateways apply it within "
        "1 s); false means SQL kept it and the periodic sync applies it later.",
    )


class BackflowList(BaseModel):
    services: list[BackflowPublic]


def _public(config: ServiceBackflow, applied: bool | None = None) -> BackflowPublic:
    return BackflowPublic(
        service=config.service,
        rate_percent=config.rate_percent,
        redact_fields=list(config.redact_fields),
        updated_at=config.updated_at,
        updated_by=config.updated_by,
        applied=applied,
    )


@router.get("/v1/backflow/rates", summary="Sampling rate and redaction list of every service")
async def list_rates(_caller: Reader, backflow: BackflowDep) -> BackflowList:
    configs = await asyncio.to_thread(backflow.store.all)
    return BackflowList(services=[_public(c) for c in configs])


@router.get("/v1/backflow/rates/{service}", summary="One service's sampling rate and redactions")
async def get_rate(_caller: Reader, backflow: BackflowDep, service: ServiceName) -> BackflowPublic:
    config = await asyncio.to_thread(backflow.store.get, _service(service))
    if config is None:
        raise NotFound(f"no backflow settings for '{service}' (it is not sampled); PUT them")
    return _public(config)


@router.put(
    "/v1/backflow/rates/{service}",
    summary="Set a service's sampling rate (live: gateways apply it within 1 s)",
)
async def put_rate(
    caller: Operator, backflow: BackflowDep, service: ServiceName, body: BackflowUpdate
) -> BackflowPublic:
    name = _service(service)
    config = await asyncio.to_thread(
        backflow.store.put, name, body.rate_percent, body.redact_fields, caller.client_id
    )
    backflow.redactions.invalidate()
    applied = await backflow.rates.publish_now()
    return _public(config, applied)


@router.delete("/v1/backflow/rates/{service}", status_code=204, summary="Stop sampling a service")
async def delete_rate(_caller: Operator, backflow: BackflowDep, service: ServiceName) -> None:
    if not await asyncio.to_thread(backflow.store.delete, _service(service)):
        raise NotFound(f"no backflow settings for '{service}'")
    backflow.redactions.invalidate()
    await backflow.rates.publish_now()


TimeParam = Annotated[
    str | None,
    Query(max_length=64, description="Unix seconds or ISO-8601 (no offset means UTC)."),
]


@router.get(
    "/v1/backflow/export",
    summary="Download a service's sampled calls in a time range (gzip JSON Lines)",
    description="Streams every stored record with ``since <= ts < until`` as one gzip "
    "stream of JSON Lines, oldest day first. Needs role operator or admin.",
    response_class=StreamingResponse,
)
async def export(
    _caller: Reader,
    backflow: BackflowDep,
    service: Annotated[str, Query(max_length=128)],
    since: TimeParam = None,
    until: TimeParam = None,
) -> StreamingResponse:
    name = _service(service)
    start = parse_instant(since, "since") if since is not None else None
    end = parse_instant(until, "until") if until is not None else None
    if start is not None and end is not None and start > end:
        raise BadRequest(f"since ({since}) is after until ({until}); swap them")
    # A sync generator: Starlette runs each step in a worker thread (file reads, gzip).
    chunks = gzip_stream(iter_lines(backflow.root, name, start, end))
    return StreamingResponse(
        chunks,
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{name}-backflow.jsonl.gz"'},
    )
