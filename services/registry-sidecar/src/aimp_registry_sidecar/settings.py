"""Sidecar settings, read from ``AIMP_SIDECAR_*`` (and the shared ``AIMP_*``) variables."""

from __future__ import annotations

import socket

from pydantic import Field

from aimp_core.settings import CoreSettings


class SidecarSettings(CoreSettings):
    """One sidecar in front of one inference server speaking the Open Inference Protocol."""

    # -- where it listens and what it fronts ------------------------------------------
    #: Only a default for running one sidecar by hand; deploy-control always passes a free port.
    sidecar_port: int = Field(default=8100, ge=1, le=65535)
    #: The inference server's HTTP endpoint; Triton listens on 8000 unless told otherwise.
    sidecar_upstream_url: str = "http://127.0.0.1:8000"

    # -- who it is in the registry --------------------------------------------------------
    #: The service name (the registry app name in upper case; the model name by default).
    sidecar_service: str = Field(min_length=1, max_length=63)
    #: Revision label the gateway splits traffic on; "1" until revisions exist.
    sidecar_revision: str = "1"
    #: The kind of server behind the sidecar (triton, cpp, java), for operators and routing.
    sidecar_runtime: str = "triton"
    #: Model name inside the server; empty means the service name (the gateway's convention).
    sidecar_model: str = ""
    #: Empty means "<host>:<service>:<port>", unique per sidecar on one machine.
    sidecar_instance_id: str = ""
    #: Address other machines use to reach this sidecar; loopback for the local stack.
    sidecar_advertised_ip: str = "127.0.0.1"

    # -- registry timing ------------------------------------------------------------------
    #: Heartbeat period. Eureka uses 30 s; 10 s lets a 30 s lease survive two lost
    #: heartbeats while a crashed pod leaves the registry within 30 s instead of 90 s.
    sidecar_renewal_interval_s: float = Field(default=10.0, gt=0)
    #: Lease the registry grants: three renewal intervals (see above).
    sidecar_lease_duration_s: int = Field(default=30, ge=1)
    #: How often upstream readiness is checked; status changes reach the registry this fast.
    sidecar_ready_poll_interval_s: float = Field(default=1.0, gt=0)
    #: Ceiling of the retry backoff while the registry is unreachable (1 s doubling up to it).
    sidecar_registry_backoff_max_s: float = Field(default=10.0, gt=0)

    # -- admission ------------------------------------------------------------------------
    #: Calls running upstream at once; Triton on 2 CPU cores gains nothing beyond a few.
    sidecar_concurrency_limit: int = Field(default=8, ge=1)
    #: Calls waiting beyond the limit; more get 503 + Retry-After so the gateway goes elsewhere.
    sidecar_queue_size: int = Field(default=64, ge=0)
    #: Longest an upstream call may take (a first CPU inference can take seconds).
    sidecar_upstream_timeout_s: float = Field(default=30.0, gt=0)

    # -- stopping -------------------------------------------------------------------------
    #: After OUT_OF_SERVICE, keep serving this long: registry readers learn of a change
    #: within 1 s (DESIGN.md), so callers that have not yet heard still get answers.
    sidecar_drain_grace_s: float = Field(default=1.0, ge=0)
    #: Longest wait for in-flight calls on SIGTERM before exiting anyway.
    sidecar_drain_timeout_s: float = Field(default=20.0, ge=0)

    # -- caller tokens --------------------------------------------------------------------
    #: Verify every caller's Bearer token (switch off only for tests or a trusted network).
    sidecar_verify_tokens: bool = True
    #: Verified tokens remembered (by hash, until expiry) so RSA is not re-run on each call.
    sidecar_token_cache_size: int = Field(default=10_000, ge=1)

    @property
    def model_name(self) -> str:
        return self.sidecar_model or self.sidecar_service

    @property
    def instance_id(self) -> str:
        return (
            self.sidecar_instance_id
            or f"{socket.gethostname()}:{self.sidecar_service}:{self.sidecar_port}"
        )
