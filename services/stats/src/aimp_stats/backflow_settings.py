"""Settings of data backflow (sampled payloads into files), read from ``AIMP_*`` variables."""

from __future__ import annotations

from pydantic import Field

from aimp_core.events import TOPIC_BACKFLOW
from aimp_core.settings import CoreSettings


class BackflowSettings(CoreSettings):
    """Where the backflow sink reads from and writes to, and how the rates reach gateways."""

    # -- the sink (Kafka -> files) -------------------------------------------------------
    #: The topic gateways publish sampled payloads to (DESIGN.md); override only to isolate
    #: environments (or test runs) sharing one broker.
    backflow_topic: str = TOPIC_BACKFLOW
    #: One group for every stats replica, so each sampled call is written by one of them.
    backflow_consumer_group: str = "aimp-stats-backflow"
    #: Switch the sink off on replicas that must not write files (e.g. no volume).
    backflow_sink_enabled: bool = True
    #: Records per poll and per file write: one gzip member per partition per batch, so
    #: bigger batches compress better; 1000 payloads of a few KiB stay a few MiB in memory.
    backflow_batch_max_records: int = Field(default=1_000, ge=1)
    #: How long one poll waits for records; bounds how late a lone sample reaches its file.
    backflow_poll_timeout_ms: int = Field(default=500, ge=10)
    #: A part file is closed and the next one started at this compressed size: 64 MiB
    #: files are quick to download and list, and few enough per day to browse.
    backflow_part_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: Compressed bytes kept per service; the oldest parts are deleted beyond it, so a
    #: busy service at 100 % sampling cannot fill the disk (AIMP_HOME is often small).
    backflow_service_max_bytes: int = Field(default=2 * 1024**3, ge=1024)
    #: Redaction lists are re-read from SQL this often, so a change made through another
    #: stats replica applies within this delay (a change through this one applies at once).
    backflow_redaction_refresh_s: float = Field(default=2.0, gt=0)

    # -- rates (SQL -> Redis -> gateways) ---------------------------------------------------
    #: SQL is the truth; Redis carries it to gateways. Rewriting Redis from SQL this often
    #: repairs a flushed or restarted Redis without an operator noticing.
    backflow_resync_s: float = Field(default=30.0, gt=0)
    #: Redis commands of the rate API and the resync give up after this long.
    backflow_redis_timeout_s: float = Field(default=2.0, gt=0)
