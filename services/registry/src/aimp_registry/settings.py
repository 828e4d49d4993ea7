"""Settings of the registry, read from ``AIMP_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from aimp_core.settings import DEFAULT_PORTS, CoreSettings


class RegistrySettings(CoreSettings):
    """Where the registry listens, how it keeps leases, streams, persists and replicates."""

    # -- this process -----------------------------------------------------------
    #: DESIGN.md fixes 8761 (Eureka's own port) locally; ``AIMP_REGISTRY_PORT`` overrides it.
    registry_port: int = DEFAULT_PORTS["registry"]

    # -- leases -------------------------------------------------------------------
    #: How often expired leases are evicted. Eureka sweeps every 60 s; our readers must
    #: learn of a dead instance within about a second, so we sweep every second (a sweep
    #: over thousands of instances costs well under a millisecond).
    registry_eviction_interval_s: float = Field(default=1.0, gt=0)
    #: Lease length for a registration whose leaseInfo names none: Eureka's 90 s, i.e.
    #: three missed 30 s heartbeats before an instance is dropped.
    registry_lease_duration_s: int = Field(default=90, gt=0)
    #: Heartbeat period reported for a registration whose leaseInfo names none: Eureka's 30 s.
    registry_renewal_interval_s: int = Field(default=30, gt=0)

    # -- self-preservation ----------------------------------------------------------
    #: Eureka's self-preservation: stop evicting while renewals fall below the threshold,
    #: because a network partition looks like mass death. Off for a registry whose
    #: instances come and go faster than Eureka's model assumes (small dev stacks).
    registry_self_preservation: bool = True
    #: Eureka's ``renewalPercentThreshold``: 85 % of the expected renewals per minute.
    registry_renewal_threshold_ratio: float = Field(default=0.85, gt=0, le=1)
    #: Renewals are counted over this sliding window: Eureka's one minute.
    registry_renewal_window_s: int = Field(default=60, ge=1)
    #: Self-preservation engages only with at least this many instances that have been
    #: registered for a full window. Eureka has no floor (1); with fewer than 7
    #: instances a single death already drops renewals below 85 %.
    registry_self_preservation_min_instances: int = Field(default=1, ge=1)

    # -- change stream ---------------------------------------------------------------
    #: How long a change stays in ``GET /eureka/apps/delta`` and is resumable on the
    #: stream: Eureka's 3 minutes, which covers a client that missed several 30 s fetches.
    registry_delta_retention_s: float = Field(default=180.0, gt=0)
    #: Comment line sent on an idle stream so proxies and readers know it is alive; a
    #: reader's read timeout should be a few of these (aimp's client uses 3x).
    registry_stream_heartbeat_s: float = Field(default=10.0, gt=0)
    #: Changes queued for one stream reader before it is dropped as too slow (it
    #: reconnects and resumes or gets a snapshot). 10k covers a full re-registration
    #: storm of a large registry while bounding memory to a few MiB per reader.
    registry_stream_queue_max: int = Field(default=10_000, ge=1)

    # -- persistence ------------------------------------------------------------------
    #: Keep the registry in SQL so that a restart brings every instance back at once.
    registry_persistence: bool = True
    #: SQLAlchemy URL of this node's own state; unset means
    #: ``$AIMP_HOME/registry/registry-<port>.db`` (SQLite). Never share one database
    #: between peers: each node keeps its own copy, replication keeps them in step.
    registry_database_url: str | None = None
    #: Changes are written in batches this long after the first one: the store is at
    #: most about 100 ms behind memory while a burst costs one transaction.
    registry_persist_delay_s: float = Field(default=0.05, ge=0)

    # -- replication --------------------------------------------------------------------
    #: Peer registries, comma-separated base URLs like ``http://10.0.0.2:8761/eureka``;
    #: empty means a standalone registry.
    registry_peers: str = ""
    #: Replication tasks queued per peer before new ones are dropped (a peer that is
    #: down long enough to fill it re-learns everything through 404 → re-register).
    registry_replication_queue_max: int = Field(default=50_000, ge=1)
    #: Tasks a peer worker takes from its queue in one round (then sent concurrently).
    registry_replication_batch_max: int = Field(default=250, ge=1)
    #: Requests in flight to one peer at a time; per-instance order is always kept.
    registry_replication_concurrency: int = Field(default=16, ge=1)
    #: Timeout of one replication call; a healthy peer answers in about a millisecond.
    registry_replication_timeout_s: float = Field(default=2.0, gt=0)
    #: Attempts per task on a transport error or 5xx, with doubling backoff from 0.1 s.
    registry_replication_attempts: int = Field(default=3, ge=1)
    #: At start, how long to wait for a peer's full registry before starting without it.
    registry_peer_sync_timeout_s: float = Field(default=3.0, gt=0)

    def peer_urls(self) -> list[str]:
        """``registry_peers`` as a list of base URLs without trailing slashes."""
        return [p.strip().rstrip("/") for p in self.registry_peers.split(",") if p.strip()]

    def state_url(self) -> str:
        """The SQL URL of this node's persisted state."""
        if self.registry_database_url:
            return self.registry_database_url
        directory: Path = self.home / "registry"
        directory.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{directory / f'registry-{self.registry_port}.db'}"
