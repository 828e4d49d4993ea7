"""Settings of the throttle service, read from ``AIMP_*`` environment variables."""

from __future__ import annotations

from aimp_core.settings import DEFAULT_PORTS, CoreSettings


class ThrottleSettings(CoreSettings):
    """Where the throttle policy service listens; SQL comes from ``sql_url("throttle")``."""

    # -- this process -----------------------------------------------------------
    #: DESIGN.md fixes 8091 as the local port; ``AIMP_THROTTLE_PORT`` overrides it.
    throttle_port: int = DEFAULT_PORTS["throttle"]
