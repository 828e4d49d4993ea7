"""Settings of the stats service, read from ``AIMP_*`` environment variables."""

from __future__ import annotations

from aimp_core.events import TOPIC_REQUESTS
from aimp_core.settings import DEFAULT_PORTS

from .alarm_settings import AlarmSettings
from .backflow_settings import BackflowSettings
from .ranges import Retention


class StatsSettings(BackflowSettings, AlarmSettings):
    """Where stats listens, how it consumes request events, and where it stores them.

    Backflow and alarm settings live in their own modules (both are CoreSettings).
    """

    # -- this process -----------------------------------------------------------
    #: DESIGN.md fixes 8092 as the local port; ``AIMP_STATS_PORT`` overrides it.
    stats_port: int = DEFAULT_PORTS["stats"]

    # -- Kafka consumer -----------------------------------------------------------
    #: The topic the gateway writes one event per call to (DESIGN.md). Override only to
    #: isolate environments (or test runs) that share one broker.
    requests_topic: str = TOPIC_REQUESTS
    #: One group for every stats replica, so each event is stored by exactly one of them.
    consumer_group: str = "aimp-stats"
    # The four timeouts below are sized for Tansu, which makes a group's first join wait
    # for the full rebalance timeout (Kafka's default of 300 s would stall every start).
    # Small values keep joins at ~3 s and still work against Apache Kafka.
    #: How long the broker waits for members to rejoin during a rebalance; Tansu's join
    #: delay. 3 s is enough for members on one network and short enough for fast starts.
    kafka_rebalance_timeout_ms: int = 3_000
    #: A member silent for this long is dropped from the group; Kafka requires it to be at
    #: least ~3 heartbeats, and 6 s lets a dead replica's partitions move on quickly.
    kafka_session_timeout_ms: int = 6_000
    #: Heartbeat period: a third of the session timeout or less, as Kafka recommends.
    kafka_heartbeat_interval_ms: int = 1_000
    #: A member that does not poll for this long leaves the group. A batch write takes
    #: milliseconds; 10 s bounds a stuck consumer (kafka clients also derive the
    #: rebalance timeout from this value, which must stay small for Tansu).
    kafka_max_poll_interval_ms: int = 10_000
    #: Every request to the broker gives up after this long (metadata, fetch, commit).
    kafka_request_timeout_ms: int = 5_000
    #: Most events written to SQL per transaction. A transaction costs ~20 us per event
    #: plus a fixed ~5 ms; at 20,000 events/s batches of 5,000 (~0.1 s each) keep the
    #: fixed part small and the lag well under a second, and at low rates a batch is
    #: simply whatever arrived since the last poll.
    consume_batch_max_events: int = 5_000
    #: Once a batch has its first event, how long it waits to fill: a transaction costs
    #: mostly per bucket row it touches, so fuller batches ingest more per second; 200 ms
    #: adds little to the lag (the goal is p99 under 2 s).
    consume_batch_wait_ms: int = 200
    #: How long one poll waits for events before returning an empty batch; bounds how
    #: late a lone event is stored (0.5 s) without spinning on an idle topic.
    consume_poll_timeout_ms: int = 500
    #: First wait after the broker or SQL fails, doubled on each failure in a row.
    consumer_retry_initial_s: float = 0.5
    #: The longest wait between retries; stays below the max poll interval so a consumer
    #: retrying a SQL write keeps its group membership.
    consumer_retry_max_s: float = 5.0

    # -- retention (rows older than this are deleted by the expiry task) -------------
    #: Raw calls: lookups by request or trace id, exact edges of recent ranges, and the
    #: deduplication record. A day covers any redelivery or producer replay; at 20,000
    #: calls/s that is ~0.5 TB, so shorten it for sustained high rates.
    calls_retention_s: float = 86_400.0
    #: Minute buckets: a week of minute-resolution charts and alarms.
    minute_buckets_retention_s: float = 7 * 86_400.0
    #: Hour buckets: a quarter of hourly history (canary and capacity reviews).
    hour_buckets_retention_s: float = 90 * 86_400.0
    #: Day buckets: two years of daily usage and metering (billing disputes, trends).
    day_buckets_retention_s: float = 730 * 86_400.0
    #: How often expired rows are deleted: often enough that each pass deletes little.
    expiry_interval_s: float = 300.0

    def retention(self) -> Retention:
        """The retention settings as the store uses them."""
        if self.calls_retention_s > self.minute_buckets_retention_s - 3600:
            raise ValueError(
                "AIMP_CALLS_RETENTION_S must be at least an hour shorter than "
                "AIMP_MINUTE_BUCKETS_RETENTION_S (ranges rely on minute buckets beyond raw calls)"
            )
        return Retention(
            self.calls_retention_s,
            self.minute_buckets_retention_s,
            self.hour_buckets_retention_s,
            self.day_buckets_retention_s,
        )
