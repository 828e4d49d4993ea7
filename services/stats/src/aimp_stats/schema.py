"""SQL tables of the stats service (SQLAlchemy Core; SQLite locally, PostgreSQL in production).

- ``request_events``: one row per call for ``AIMP_CALLS_RETENTION_S`` (24 h):
  the event as the gateway sent it plus ``stored_at`` (when it reached SQL). It
  answers lookups by request or trace id, the exact edges of recent ranges, and
  is the deduplication record: an event whose (``ts``, ``event_id``) is stored
  here is never counted again. ``seq`` is the arrival order, so expiry deletes a
  prefix of the table. Its only index is the unique (``ts``, ``event_id``), which
  grows at its end (time order): a random-key index (request ids are random)
  makes every batch rewrite pages all over the index and cut ingest 5-10 times
  once the table holds millions of rows.
- ``call_blocks``: per ingest batch, its ``seq`` range and the sorted CRC-32s of
  its request and trace ids: a lookup by id binary-searches each block and reads
  only the blocks that may hold it (a data-skipping index, as ClickHouse's).
- ``buckets_1m``, ``buckets_1h``, ``buckets_1d``: one row per (start, service,
  revision, client_id, status class), written in the same transaction as the raw
  rows, so all tiers always agree.
- ``ingest_lock``: one row every ingest transaction updates first, which
  serializes writers (several consumer instances) on SQLite and PostgreSQL alike
  and makes the read-merge-write of bucket sketches safe.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
)

from .domain import TEXT_LIMITS
from .ranges import Tier

metadata = MetaData()

#: SQLite makes an INTEGER PRIMARY KEY the rowid (no extra index); PostgreSQL a BIGINT.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")


def _text(name: str, **kw: object) -> Column[str]:
    return Column(name, String(TEXT_LIMITS[name]), nullable=False, **kw)  # type: ignore[arg-type]


request_events = Table(
    "request_events",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    _text("event_id"),
    Column("ts", Float, nullable=False),
    Column("stored_at", Float, nullable=False),
    _text("trace_id"),
    _text("request_id"),
    _text("client_id"),
    _text("service"),
    _text("revision"),
    _text("instance_id"),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("upstream_ms", Float, nullable=False),
    Column("bytes_in", BigInteger, nullable=False),
    Column("bytes_out", BigInteger, nullable=False),
    _text("outcome"),
    Index("ux_request_events_ts_event_id", "ts", "event_id", unique=True),
)

call_blocks = Table(
    "call_blocks",
    metadata,
    Column("seq_from", _SEQ, primary_key=True, autoincrement=False),
    Column("seq_to", BigInteger, nullable=False),
    Column("stored_at", Float, nullable=False),
    #: sorted little-endian u32 CRC-32s of the block's request ids and trace ids
    Column("id_hashes", LargeBinary, nullable=False),
)


def _bucket_table(tier: Tier) -> Table:
    name = {Tier.MINUTE: "buckets_1m", Tier.HOUR: "buckets_1h", Tier.DAY: "buckets_1d"}[tier]
    return Table(
        name,
        metadata,
        Column("bucket_start", BigInteger, primary_key=True),
        Column("service", String(TEXT_LIMITS["service"]), primary_key=True),
        Column("revision", String(TEXT_LIMITS["revision"]), primary_key=True),
        Column("client_id", String(TEXT_LIMITS["client_id"]), primary_key=True),
        Column("status_class", SmallInteger, primary_key=True),
        Column("requests", BigInteger, nullable=False),
        Column("throttled", BigInteger, nullable=False),
        Column("latency_ms_sum", Float, nullable=False),
        Column("upstream_ms_sum", Float, nullable=False),
        Column("bytes_in", BigInteger, nullable=False),
        Column("bytes_out", BigInteger, nullable=False),
        Column("sketch", LargeBinary, nullable=False),
        Index(f"ix_{name}_service", "service", "bucket_start"),
        Index(f"ix_{name}_client", "client_id", "bucket_start"),
    )


buckets = {tier: _bucket_table(tier) for tier in Tier}

ingest_lock = Table(
    "ingest_lock",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("batches", BigInteger, nullable=False),
    #: The ``seq`` the next stored call gets.
    Column("next_seq", BigInteger, nullable=False),
)

#: Value columns of a bucket row, in :class:`~aimp_stats.buckets.Aggregate` order.
BUCKET_VALUES = (
    "requests",
    "throttled",
    "latency_ms_sum",
    "upstream_ms_sum",
    "bytes_in",
    "bytes_out",
    "sketch",
)
BUCKET_KEYS = ("bucket_start", "service", "revision", "client_id", "status_class")
