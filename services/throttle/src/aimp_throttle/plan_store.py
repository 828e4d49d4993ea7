"""SQL adapter: plans, which client is on which plan, and the snapshot of every rule."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from aimp_core.ratelimit.policies import Snapshot

from .domain import Limits, Plan
from .store import (
    PolicyStore,
    limit_values,
    limits_of,
    throttle_assignments,
    throttle_plans,
    utc,
)


class PlanInUse(Exception):
    def __init__(self, clients: int) -> None:
        super().__init__(clients)
        self.clients = clients


class UnknownPlan(Exception):
    pass


def _plan(row: Any) -> Plan:
    return Plan(
        plan_id=row["plan_id"],
        description=row["description"],
        limits=limits_of(row),
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
    )


class PlanStore:
    """Plans and assignments in the same SQL database as the policies."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, plan_id: str) -> tuple[Plan, int] | None:
        """The plan and how many clients are on it."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(throttle_plans).where(throttle_plans.c.plan_id == plan_id)
            ).mappings().first()  # fmt: skip
            if row is None:
                return None
            return _plan(row), self._clients(conn, plan_id)

    @staticmethod
    def _clients(conn: Any, plan_id: str) -> int:
        query = select(func.count()).where(throttle_assignments.c.plan_id == plan_id)
        return int(conn.execute(query).scalar_one())

    def list_all(self) -> list[tuple[Plan, int]]:
        counts = (
            select(throttle_assignments.c.plan_id, func.count().label("n"))
            .group_by(throttle_assignments.c.plan_id)
            .subquery()
        )
        query = (
            select(throttle_plans, counts.c.n)
            .outerjoin(counts, counts.c.plan_id == throttle_plans.c.plan_id)
            .order_by(throttle_plans.c.plan_id)
        )
        with self.engine.connect() as conn:
            return [(_plan(r), int(r["n"] or 0)) for r in conn.execute(query).mappings()]

    def put(
        self, plan_id: str, description: str, limits: Limits, now: datetime
    ) -> tuple[Plan, bool]:
        """Create or replace the plan; returns it and whether it was created."""
        table = throttle_plans
        values = {"description": description, **limit_values(limits)}
        for attempt in (1, 2):
            try:
                with self.engine.begin() as conn:
                    found = conn.execute(
                        select(table).where(table.c.plan_id == plan_id)
                    ).mappings().first()  # fmt: skip
                    if found is None:
                        conn.execute(
                            insert(table).values(
                                plan_id=plan_id, **values, created_at=now, updated_at=now
                            )
                        )
                    else:
                        if limits.warmup_started_at is None:
                            values["warmup_started_at"] = found["warmup_started_at"]
                        conn.execute(
                            update(table)
                            .where(table.c.plan_id == plan_id)
                            .values(**values, updated_at=now)
                        )
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        got = self.get(plan_id)
        assert got is not None
        return got[0], found is None

    def start_warmup(self, plan_id: str, now: datetime) -> bool:
        query = (
            update(throttle_plans)
            .where(throttle_plans.c.plan_id == plan_id)
            .values(warmup_started_at=now)
        )
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount > 0

    def delete(self, plan_id: str) -> bool:
        """Remove the plan; False if there was none; :class:`PlanInUse` if clients are on it."""
        with self.engine.begin() as conn:
            clients = self._clients(conn, plan_id)
            if clients:
                raise PlanInUse(clients)
            query = delete(throttle_plans).where(throttle_plans.c.plan_id == plan_id)
            return conn.execute(query).rowcount > 0

    # -- assignments ------------------------------------------------------------------------

    def assignment(self, client_id: str) -> str | None:
        query = select(throttle_assignments.c.plan_id).where(
            throttle_assignments.c.client_id == client_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else str(row[0])

    def assignments(self) -> dict[str, str]:
        query = select(throttle_assignments).order_by(throttle_assignments.c.client_id)
        with self.engine.connect() as conn:
            return {r["client_id"]: r["plan_id"] for r in conn.execute(query).mappings()}

    def assign(self, client_id: str, plan_id: str, now: datetime) -> bool:
        """Put the client on the plan; True if it had none. :class:`UnknownPlan` if missing."""
        table = throttle_assignments
        with self.engine.begin() as conn:
            plan = select(throttle_plans.c.plan_id).where(throttle_plans.c.plan_id == plan_id)
            if conn.execute(plan).first() is None:
                raise UnknownPlan(plan_id)
            had = conn.execute(select(table).where(table.c.client_id == client_id)).first()
            if had is None:
                conn.execute(
                    insert(table).values(client_id=client_id, plan_id=plan_id, assigned_at=now)
                )
            else:
                conn.execute(
                    update(table)
                    .where(table.c.client_id == client_id)
                    .values(plan_id=plan_id, assigned_at=now)
                )
        return had is None

    def unassign(self, client_id: str) -> bool:
        query = delete(throttle_assignments).where(throttle_assignments.c.client_id == client_id)
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount > 0


def build_snapshot(policies: PolicyStore, plans: PlanStore) -> Snapshot:
    """Every rule as it stands in SQL now."""
    return Snapshot(
        policies=tuple(p.rule() for p in policies.list_all()),
        plans={plan.plan_id: plan.rule() for plan, _ in plans.list_all()},
        assignments=plans.assignments(),
    )
