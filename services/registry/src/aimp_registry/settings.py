"""Settings of the registry, read from ``AIMP_*`` environment variables."""

from __future__ import annotations

from pydantic import Field

from aimp_core.settings import DEFAULT_PORTS, CoreSettings


class RegistrySettings(CoreSettings):
    """Where the registry listens and how it keeps leases."""

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

    # -- change stream ---------------------------------------------------------------
    #: How long a change stays in ``GET /eureka/apps/delta``: Eureka's 3 minutes, which
    #: covers a client that missed several 30 s delta fetches before it needs a full fetch.
    registry_delta_retention_s: float = Field(default=180.0, gt=0)
