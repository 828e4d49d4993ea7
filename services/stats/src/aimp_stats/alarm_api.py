"""HTTP routes of alarms: rules (CRUD), the alerts now active, and the event history."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AnyHttpUrl, BaseModel, Field, ValidationError, field_validator

from aimp_core.auth import Principal, can_operate, require
from aimp_core.errors import BadRequest, NotFound

from .alarm_app import Alarms
from .alarm_domain import POD_METRICS, SERVICE_METRICS, Comparison, Metric, Phase
from .alarm_store import RULE_FIELDS, StoredRule
from .auth import Reader, current_principal
from .domain import parse_instant

router = APIRouter(tags=["alarms"])

#: Selectors are names or shell patterns over names (``*``, ``?``, ``[...]``).
SELECTOR = re.compile(r"^[A-Za-z0-9._\-*?\[\]]{1,256}$")
METRIC_HELP = "; ".join(f"{k}: {v}" for k, v in {**SERVICE_METRICS, **POD_METRICS}.items())


def _alarms(request: Request) -> Alarms:
    alarms: Alarms = request.app.state.alarms
    return alarms


async def _operator(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    require(can_operate(principal.roles), "changing alarm rules (operator or admin)")
    return principal


AlarmsDep = Annotated[Alarms, Depends(_alarms)]
Operator = Annotated[Principal, Depends(_operator)]


def _selector(value: str) -> str:
    if not SELECTOR.fullmatch(value):
        raise ValueError(
            "must be a name or a shell pattern ('*' for all, e.g. 'iris*'): letters, digits, "
            "'.', '_', '-', '*', '?', '[', ']'"
        )
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class AlarmRuleCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    metric: Metric = Field(description=METRIC_HELP)
    service: str = Field(default="*", description="Service name or pattern the rule watches.")
    pod: str = Field(default="*", description="Pod pattern (pod metrics only; instance id).")
    comparison: Comparison = ">"
    threshold: float
    hold_minutes: float = Field(
        ge=0,
        le=1440,
        description="How long the condition must hold before firing (Prometheus 'for'); "
        "fractions are fine, e.g. 0.5.",
    )
    window_s: float = Field(
        default=60.0, ge=1, le=86_400, description="Window service metrics are computed over."
    )
    min_requests: int = Field(
        default=1,
        ge=1,
        description="Fewest calls in the window for error_rate, throttled_rate and p99_ms to "
        "count (fewer means no data, which never fires).",
    )
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="POSTed each firing and resolved event (with retries)."
    )
    enabled: bool = True

    _check_service = field_validator("service", "pod")(_selector)
    _check_threshold = field_validator("threshold")(_finite)


class AlarmRuleUpdate(BaseModel):
    """Fields to change; the others keep their values."""

    name: str | None = Field(default=None, min_length=1, max_length=128)
    metric: Metric | None = None
    service: str | None = None
    pod: str | None = None
    comparison: Comparison | None = None
    threshold: float | None = None
    hold_minutes: float | None = None
    window_s: float | None = None
    min_requests: int | None = None
    webhook_url: AnyHttpUrl | None = None
    enabled: bool | None = None


class AlarmRulePublic(BaseModel):
    id: int
    name: str
    metric: str
    service: str
    pod: str
    comparison: str
    threshold: float
    hold_minutes: float
    window_s: float
    min_requests: int
    webhook: str | None = Field(
        description="The webhook's scheme and host (its path may hold a token, so it is not shown)."
    )
    enabled: bool
    created_at: float
    updated_at: float


class AlarmRuleList(BaseModel):
    rules: list[AlarmRulePublic]


class AlarmEventPublic(BaseModel):
    event_id: str
    ts: float
    state: Literal["firing", "resolved"]
    rule_id: int
    rule_name: str
    metric: str
    service: str
    pod: str
    value: float | None
    comparison: str
    threshold: float
    hold_minutes: float
    active_since: float = Field(description="When the condition began to hold.")


class AlarmHistory(BaseModel):
    events: list[AlarmEventPublic]


class ActiveAlert(BaseModel):
    rule_id: int
    rule_name: str
    metric: str
    subject: str = Field(description="The service, or the pod for pod metrics.")
    phase: Literal["pending", "firing"]
    since: float
    value: float | None


class ActiveAlerts(BaseModel):
    alerts: list[ActiveAlert]


def _webhook_origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/…"


def _public(stored: StoredRule) -> AlarmRulePublic:
    r = stored.rule
    return AlarmRulePublic(
        **{k: getattr(r, k) for k in RULE_FIELDS if k != "webhook_url"},
        id=r.id,
        webhook=_webhook_origin(r.webhook_url),
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


def _fields(rule: AlarmRuleCreate) -> dict[str, Any]:
    fields = rule.model_dump()
    fields["webhook_url"] = str(rule.webhook_url) if rule.webhook_url else None
    return fields


@router.get("/v1/alarms/rules", summary="Every alarm rule")
async def list_rules(_caller: Reader, alarms: AlarmsDep) -> AlarmRuleList:
    stored = await asyncio.to_thread(alarms.store.rules)
    return AlarmRuleList(rules=[_public(s) for s in stored])


@router.post("/v1/alarms/rules", status_code=201, summary="Create an alarm rule")
async def create_rule(
    _caller: Operator, alarms: AlarmsDep, body: AlarmRuleCreate
) -> AlarmRulePublic:
    return _public(await asyncio.to_thread(alarms.store.create_rule, _fields(body)))


@router.get("/v1/alarms/rules/{rule_id}", summary="One alarm rule")
async def get_rule(_caller: Reader, alarms: AlarmsDep, rule_id: int) -> AlarmRulePublic:
    stored = await asyncio.to_thread(alarms.store.get_rule, rule_id)
    if stored is None:
        raise NotFound(f"alarm rule {rule_id} does not exist; GET /v1/alarms/rules lists them")
    return _public(stored)


@router.patch("/v1/alarms/rules/{rule_id}", summary="Change some fields of an alarm rule")
async def update_rule(
    _caller: Operator, alarms: AlarmsDep, rule_id: int, body: AlarmRuleUpdate
) -> AlarmRulePublic:
    stored = await asyncio.to_thread(alarms.store.get_rule, rule_id)
    if stored is None:
        raise NotFound(f"alarm rule {rule_id} does not exist; GET /v1/alarms/rules lists them")
    merged = {k: getattr(stored.rule, k) for k in RULE_FIELDS}
    merged.update(body.model_dump(exclude_unset=True))
    try:
        checked = AlarmRuleCreate.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadRequest(f"{where}: {first.get('msg')}") from None
    updated = await asyncio.to_thread(alarms.store.update_rule, rule_id, _fields(checked))
    if updated is None:
        raise NotFound(f"alarm rule {rule_id} was deleted meanwhile")
    return _public(updated)


@router.delete("/v1/alarms/rules/{rule_id}", status_code=204, summary="Delete an alarm rule")
async def delete_rule(_caller: Operator, alarms: AlarmsDep, rule_id: int) -> None:
    if not await asyncio.to_thread(alarms.store.delete_rule, rule_id):
        raise NotFound(f"alarm rule {rule_id} does not exist")


@router.get("/v1/alarms/active", summary="Alerts pending or firing now")
async def active(_caller: Reader, alarms: AlarmsDep) -> ActiveAlerts:
    rules = {s.rule.id: s.rule for s in await asyncio.to_thread(alarms.store.rules)}
    states = await asyncio.to_thread(alarms.store.states)
    alerts = [
        ActiveAlert(
            rule_id=rule_id,
            rule_name=rules[rule_id].name,
            metric=rules[rule_id].metric,
            subject=subject,
            phase="firing" if state.phase is Phase.FIRING else "pending",
            since=state.since,
            value=state.value,
        )
        for (rule_id, subject), state in sorted(states.items())
        if rule_id in rules and state.phase is not Phase.OK
    ]
    return ActiveAlerts(alerts=alerts)


TimeParam = Annotated[
    str | None, Query(max_length=64, description="Unix seconds or ISO-8601 (naive means UTC).")
]


@router.get(
    "/v1/alarms/history",
    summary="Firing and resolved events, newest first",
    description="Filters: service, rule_id, since (inclusive), until (exclusive), limit.",
)
async def history(
    _caller: Reader,
    alarms: AlarmsDep,
    service: Annotated[str | None, Query(max_length=128)] = None,
    rule_id: int | None = None,
    since: TimeParam = None,
    until: TimeParam = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> AlarmHistory:
    start = parse_instant(since, "since") if since is not None else None
    end = parse_instant(until, "until") if until is not None else None
    rows = await asyncio.to_thread(
        alarms.store.history,
        service=service or None,
        rule_id=rule_id,
        since=start,
        until=end,
        limit=limit,
    )
    return AlarmHistory(events=[AlarmEventPublic.model_validate(r) for r in rows])
