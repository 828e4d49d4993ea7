"""Gateway settings, read from ``AIMP_GATEWAY_*`` (and the core ``AIMP_*``) variables."""

from __future__ import annotations

from pathlib import Path

from aimp_core.settings import DEFAULT_PORTS, CoreSettings


class GatewaySettings(CoreSettings):
    """Everything the gateway reads at start; units are in the field names."""

    # -- listening -------------------------------------------------------------
    gateway_port: int = DEFAULT_PORTS["gateway"]

    # -- tokens ------------------------------------------------------------------
    #: Short-lived bearer tokens limit the damage a leaked token can do.
    gateway_access_token_ttl_s: int = 900
    #: Unset means ``$AIMP_HOME/keys/gateway-signing.pem`` (created on first start).
    gateway_signing_key_file: Path | None = None
    #: Verified tokens kept in memory so a repeat caller skips the RSA check; bounded
    #: so a flood of distinct tokens cannot grow memory.
    gateway_token_cache_size: int = 10_000

    # -- identities ----------------------------------------------------------------
    #: Unset means ``$AIMP_HOME/credentials.json`` (DESIGN.md format).
    gateway_credentials_file: Path | None = None

    # -- routing -------------------------------------------------------------------
    #: DESIGN.md: readers must learn of a registry change within 1 s.
    gateway_registry_refresh_interval_s: float = 1.0

    # -- upstream calls ---------------------------------------------------------------
    #: A pod on the same network accepts in well under 2 s; longer means it is gone.
    gateway_upstream_connect_timeout_s: float = 2.0
    #: Covers slow model inference while still freeing a stuck connection.
    gateway_upstream_total_timeout_s: float = 30.0
    #: Pooled keep-alive connections across all pods; bounds file descriptors.
    gateway_upstream_max_connections: int = 1000
    #: Largest request body accepted (64 MiB covers big tensors, bounds memory per call).
    gateway_max_body_bytes: int = 64 * 1024 * 1024

    # -- throttle ------------------------------------------------------------------------
    #: Per-client calls per second; generous so the default only stops runaway clients.
    gateway_rate_per_s: float = 1000.0
    #: Calls a client may send at once on top of the steady rate.
    gateway_rate_burst: int = 200
    #: A throttle check must never hang a call.
    gateway_redis_socket_timeout_s: float = 0.25
    #: Redis down means "admit" (open) rather than "refuse every call" (closed).
    gateway_throttle_fail_open: bool = True
    #: During a Redis outage only one check per this period pays the socket timeout.
    gateway_throttle_retry_after_outage_s: float = 1.0

    @property
    def signing_key_path(self) -> Path:
        return self.gateway_signing_key_file or self.home / "keys" / "gateway-signing.pem"

    @property
    def credentials_path(self) -> Path:
        return self.gateway_credentials_file or self.home / "credentials.json"
