"""SQL adapter of alarms: rules, the state of each alert, and the history of events.

Tables (created beside the stats tables): ``alarm_rules``; ``alarm_states`` (one row
per alert that is not OK, so an evaluator restarted mid-alarm resolves it rather than
firing it twice); ``alarm_events`` (every firing and resolved event, the history).
Methods are synchronous; callers on the event loop use ``asyncio.to_thread``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)

from .alarm_domain import AlertState, Phase, Rule

metadata = MetaData()

alarm_rules = Table(
    "alarm_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("service", String(128), nullable=False),
    Column("pod", String(256), nullable=False),
    Column("comparison", String(2), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("hold_minutes", Float, nullable=False),
    Column("window_s", Float, nullable=False),
    Column("min_requests", Integer, nullable=False),
    Column("webhook_url", String(2048), nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

alarm_states = Table(
    "alarm_states",
    metadata,
    Column("rule_id", Integer, primary_key=True),
    Column("subject", String(256), primary_key=True),
    Column("phase", String(16), nullable=False),
    Column("since", Float, nullable=False),
    Column("value", Float, nullable=True),
)

alarm_events = Table(
    "alarm_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("ts", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("rule_id", Integer, nullable=False),
    Column("rule_name", String(128), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("service", String(128), nullable=False),
    Column("pod", String(256), nullable=False),
    Column("value", Float, nullable=True),
    Column("comparison", String(2), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("hold_minutes", Float, nullable=False),
    Column("active_since", Float, nullable=False),
    Index("ix_alarm_events_service_ts", "service", "ts"),
    Index("ix_alarm_events_ts", "ts"),
)

RULE_FIELDS = (
    "name",
    "metric",
    "service",
    "pod",
    "comparison",
    "threshold",
    "hold_minutes",
    "window_s",
    "min_requests",
    "webhook_url",
    "enabled",
)
EVENT_FIELDS = tuple(c.name for c in alarm_events.columns if c.name != "id")


@dataclass(frozen=True)
class StoredRule:
    rule: Rule
    created_at: float
    updated_at: float


def _rule(row: Any) -> StoredRule:
    m = row._mapping
    rule = Rule(id=int(m["id"]), **{k: m[k] for k in RULE_FIELDS})
    return StoredRule(rule, float(m["created_at"]), float(m["updated_at"]))


class AlarmStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        metadata.create_all(self.engine)

    # -- rules ---------------------------------------------------------------------------

    def create_rule(self, fields: Mapping[str, Any]) -> StoredRule:
        now = time.time()
        values = {k: fields[k] for k in RULE_FIELDS}
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(alarm_rules).values(**values, created_at=now, updated_at=now)
            )
            key = result.inserted_primary_key
            assert key is not None
            rule_id = int(key[0])
        stored = self.get_rule(rule_id)
        assert stored is not None
        return stored

    def get_rule(self, rule_id: int) -> StoredRule | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(alarm_rules).where(alarm_rules.c.id == rule_id)).first()
        return _rule(row) if row is not None else None

    def rules(self, *, enabled_only: bool = False) -> list[StoredRule]:
        query = select(alarm_rules).order_by(alarm_rules.c.id)
        if enabled_only:
            query = query.where(alarm_rules.c.enabled.is_(True))
        with self.engine.connect() as conn:
            return [_rule(r) for r in conn.execute(query)]

    def update_rule(self, rule_id: int, changes: Mapping[str, Any]) -> StoredRule | None:
        """Apply ``changes``; alerts keep their state and follow the new condition next pass."""
        values = {k: v for k, v in changes.items() if k in RULE_FIELDS}
        with self.engine.begin() as conn:
            result = conn.execute(
                update(alarm_rules)
                .where(alarm_rules.c.id == rule_id)
                .values(**values, updated_at=time.time())
            )
            if result.rowcount == 0:
                return None
        return self.get_rule(rule_id)

    def delete_rule(self, rule_id: int) -> bool:
        """Forget the rule and its alerts (a firing one gets no resolved event: disable the
        rule first for that)."""
        with self.engine.begin() as conn:
            conn.execute(delete(alarm_states).where(alarm_states.c.rule_id == rule_id))
            result = conn.execute(delete(alarm_rules).where(alarm_rules.c.id == rule_id))
        return result.rowcount > 0

    def has_work(self) -> bool:
        """Whether any rule or any alert exists (else an evaluation can fire nothing)."""
        with self.engine.connect() as conn:
            rule = conn.execute(select(alarm_rules.c.id).limit(1)).first()
            alert = conn.execute(select(alarm_states.c.rule_id).limit(1)).first()
        return rule is not None or alert is not None

    # -- alert states --------------------------------------------------------------------

    def states(self) -> dict[tuple[int, str], AlertState]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(alarm_states))
            return {
                (int(r.rule_id), str(r.subject)): AlertState(Phase(r.phase), r.since, r.value)
                for r in rows
            }

    def save(
        self,
        states: Mapping[tuple[int, str], AlertState],
        events: Iterable[Mapping[str, Any]],
    ) -> None:
        """Store the alerts' states (OK ones are removed) and new events, in one transaction."""
        with self.engine.begin() as conn:
            for (rule_id, subject), state in states.items():
                conn.execute(
                    delete(alarm_states).where(
                        alarm_states.c.rule_id == rule_id, alarm_states.c.subject == subject
                    )
                )
                if state.phase is not Phase.OK:
                    conn.execute(
                        insert(alarm_states).values(
                            rule_id=rule_id,
                            subject=subject,
                            phase=state.phase.value,
                            since=state.since,
                            value=state.value,
                        )
                    )
            rows = [{k: e[k] for k in EVENT_FIELDS} for e in events]
            if rows:
                conn.execute(insert(alarm_events), rows)

    # -- history -------------------------------------------------------------------------

    def history(
        self,
        *,
        service: str | None,
        rule_id: int | None,
        since: float | None,
        until: float | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Events newest first, filtered; at most ``limit``."""
        c = alarm_events.c
        query = select(alarm_events).order_by(c.ts.desc(), c.id.desc()).limit(limit)
        if service is not None:
            query = query.where(c.service == service)
        if rule_id is not None:
            query = query.where(c.rule_id == rule_id)
        if since is not None:
            query = query.where(c.ts >= since)
        if until is not None:
            query = query.where(c.ts < until)
        with self.engine.connect() as conn:
            return [{k: r._mapping[k] for k in EVENT_FIELDS} for r in conn.execute(query)]
