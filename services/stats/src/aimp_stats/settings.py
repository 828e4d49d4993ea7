"""Settings of the stats service, read from ``AIMP_*`` environment variables."""

from __future__ import annotations

from aimp_core.events import TOPIC_REQUESTS
from aimp_core.settings import DEFAULT_PORTS, CoreSettings


class StatsSettings(CoreSettings):
    """Where stats listens, how it consumes request events, and where it stores them."""

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
    #: Events written to SQL per transaction: 500 keeps a SQLite transaction ~10 ms while
    #: amortizing the commit cost; higher rates simply produce more full batches.
    consume_batch_max_events: int = 500
    #: How long one poll waits for events before returning an empty batch; bounds how
    #: late a lone event is stored (0.5 s) without spinning on an idle topic.
    consume_poll_timeout_ms: int = 500
    #: First wait after the broker or SQL fails, doubled on each failure in a row.
    consumer_retry_initial_s: float = 0.5
    #: The longest wait between retries; stays below the max poll interval so a consumer
    #: retrying a SQL write keeps its group membership.
    consumer_retry_max_s: float = 5.0
