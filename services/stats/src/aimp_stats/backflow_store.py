"""Backflow settings per service: SQL is the truth, Redis carries the rates to gateways.

SQL table ``backflow_services``: ``service``, ``rate_percent`` (0-100),
``redact_fields`` (a JSON list of paths), ``updated_at``, ``updated_by``.

Redis protocol (the gateway's :mod:`aimp_gateway.backflow` reads it):

- ``aimp:backflow:rates``: a hash ``{service: rate_percent}`` of the services with a
  rate above 0, rewritten whole in one transaction on every change;
- ``aimp:backflow:version``: a counter bumped in the same transaction;
- channel ``aimp:backflow:changed``: the new version, published after it, so gateways
  reload at once (and a gateway that missed the message sees the version change on
  its next poll, within 1 s).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import (
    Column,
    Engine,
    Executable,
    Float,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from aimp_stats.store import UnsupportedDatabase

RATES_KEY = "aimp:backflow:rates"
VERSION_KEY = "aimp:backflow:version"
CHANNEL = "aimp:backflow:changed"

metadata = MetaData()

backflow_services = Table(
    "backflow_services",
    metadata,
    Column("service", String(128), primary_key=True),
    Column("rate_percent", Float, nullable=False),
    Column("redact_fields", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(128), nullable=False),
)


@dataclass(frozen=True)
class ServiceBackflow:
    """One service's backflow settings."""

    service: str
    rate_percent: float
    redact_fields: tuple[str, ...]
    updated_at: float
    updated_by: str


class BackflowConfigStore:
    """Reads and writes ``backflow_services`` (synchronous; run in a thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        metadata.create_all(self.engine)

    def all(self) -> list[ServiceBackflow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(backflow_services).order_by(backflow_services.c.service))
            return [_row(r) for r in rows]

    def get(self, service: str) -> ServiceBackflow | None:
        query = select(backflow_services).where(backflow_services.c.service == service)
        with self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return _row(row) if row is not None else None

    def put(
        self,
        service: str,
        rate_percent: float,
        redact_fields: Sequence[str] | None,
        updated_by: str,
    ) -> ServiceBackflow:
        """Set the rate (and the redaction list unless ``None``: then the stored one stays)."""
        with self.engine.begin() as conn:
            old = conn.execute(
                select(backflow_services.c.redact_fields).where(
                    backflow_services.c.service == service
                )
            ).scalar_one_or_none()
            fields = list(redact_fields) if redact_fields is not None else _fields(old or "[]")
            values = {
                "service": service,
                "rate_percent": rate_percent,
                "redact_fields": json.dumps(fields),
                "updated_at": time.time(),
                "updated_by": updated_by,
            }
            conn.execute(self._upsert(values))
        stored = self.get(service)
        assert stored is not None
        return stored

    def delete(self, service: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(backflow_services).where(backflow_services.c.service == service)
            )
        return result.rowcount > 0

    def redactions(self) -> dict[str, tuple[str, ...]]:
        """``{service: paths}`` for every service with a redaction list."""
        return {s.service: s.redact_fields for s in self.all() if s.redact_fields}

    def _upsert(self, values: dict[str, object]) -> Executable:
        dialect = self.engine.dialect.name
        update = {k: v for k, v in values.items() if k != "service"}
        if dialect == "sqlite":
            return (
                sqlite.insert(backflow_services)
                .values(values)
                .on_conflict_do_update(index_elements=["service"], set_=update)
            )
        if dialect == "postgresql":
            return (
                postgresql.insert(backflow_services)
                .values(values)
                .on_conflict_do_update(index_elements=["service"], set_=update)
            )
        raise UnsupportedDatabase(dialect)


def _fields(text: str) -> list[str]:
    value = json.loads(text)
    return [str(v) for v in value] if isinstance(value, list) else []


def _row(row: object) -> ServiceBackflow:
    m = row._mapping  # type: ignore[attr-defined]
    return ServiceBackflow(
        service=m["service"],
        rate_percent=float(m["rate_percent"]),
        redact_fields=tuple(_fields(m["redact_fields"])),
        updated_at=float(m["updated_at"]),
        updated_by=m["updated_by"],
    )


async def publish_rates(redis: Redis, configs: Sequence[ServiceBackflow]) -> int:
    """Replace the rates hash with ``configs`` (rates above 0), bump and announce the version."""
    rates = {c.service: repr(c.rate_percent) for c in configs if c.rate_percent > 0}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(RATES_KEY)
        if rates:
            pipe.hset(RATES_KEY, mapping=rates)  # type: ignore[arg-type]
        pipe.incr(VERSION_KEY)
        results = await pipe.execute()
    version = int(results[-1])
    await redis.publish(CHANNEL, str(version))
    return version
