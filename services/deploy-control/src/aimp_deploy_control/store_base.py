"""The declarative base every deploy-control table shares (one metadata, one schema)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


def aware(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
