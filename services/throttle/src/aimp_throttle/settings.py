"""Settings of the throttle service, read from ``AIMP_*`` environment variables."""

from __future__ import annotations

from pydantic import Field

from aimp_core.settings import DEFAULT_PORTS, CoreSettings


class ThrottleSettings(CoreSettings):
    """Where the service listens and how it talks to Redis; SQL comes from ``sql_url``."""

    # -- this process -----------------------------------------------------------
    #: DESIGN.md fixes 8091 as the local port; ``AIMP_THROTTLE_PORT`` overrides it.
    throttle_port: int = DEFAULT_PORTS["throttle"]

    # -- publishing rules to the gateways ----------------------------------------------
    #: Every change is published at once; this loop re-checks Redis so a snapshot lost
    #: to a Redis restart (or written by an older replica) is replaced within 1 s.
    throttle_publish_interval_s: float = Field(default=0.5, gt=0)

    # -- POST /v1/check ----------------------------------------------------------------
    #: A check must never hang its caller: Redis gets this long, then the policy's
    #: on_redis_down decides (as in the gateway).
    throttle_redis_socket_timeout_s: float = Field(default=0.25, gt=0)
    #: Leases handed to callers are not renewed: they expire after this unless released.
    #: Long enough for a slow model call (the gateway's upstream timeout is 30 s).
    throttle_lease_ttl_s: float = Field(default=30.0, gt=0)
    #: The per-client limit when no policy or plan covers a client. Keep equal to the
    #: gateway's AIMP_GATEWAY_RATE_PER_S / AIMP_GATEWAY_RATE_BURST: both count in the
    #: same Redis bucket. Generous, so the default only stops runaway clients.
    throttle_default_rate_per_s: float = Field(default=1000.0, gt=0)
    throttle_default_burst: int = Field(default=200, ge=1)
