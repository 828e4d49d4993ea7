"""Settings of revisions, traffic and warm-up, from ``AIMP_DEPLOY_CONTROL_*`` variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class RevisionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIMP_DEPLOY_CONTROL_", extra="ignore")

    # -- the gateway's config center ------------------------------------------------------
    #: The gateway deploy-control writes traffic splits to; unset means AIMP_TOKEN_ISSUER
    #: (the gateway's public base URL, which every service already knows).
    gateway_url: str | None = None
    #: deploy-control's own OAuth2 client at the gateway (role admin:config); `aimp up`
    #: creates it. Unset: traffic changes are refused with a message saying so.
    client_id: str | None = None
    client_secret: SecretStr | None = None
    #: Each call to the gateway gives up after this long (a config write is one SQL
    #: transaction, milliseconds on a healthy gateway).
    gateway_timeout_s: float = Field(default=5.0, gt=0)
    #: A config write that loses a race (412) is re-read and retried this many times.
    config_write_attempts: int = Field(default=5, ge=1, le=50)
    #: The config center applies a change in every gateway within 1 s (DESIGN.md); 1.5 s
    #: adds margin for a slow poll before old pods are stopped.
    config_apply_wait_s: float = Field(default=1.5, ge=0)
    #: A token is renewed this long before it expires, so no call carries a stale one.
    token_refresh_margin_s: float = Field(default=30.0, ge=0)

    # -- promote and roll back ------------------------------------------------------------
    #: After the traffic moved, old pods keep running this long before they are stopped:
    #: calls already sent to them finish (sidecars also drain on SIGTERM).
    drain_grace_s: float = Field(default=2.0, ge=0)

    # -- warm-up ----------------------------------------------------------------------------
    #: Sample requests each new pod must answer before its revision takes traffic; a few
    #: make the server load the model and run its first (slow) inferences.
    warmup_requests: int = Field(default=3, ge=0, le=1000)
    #: Longest wait for a new revision's pods to be UP and answer the warm-up.
    warmup_timeout_s: float = Field(default=180.0, gt=0)
    #: One warm-up call gives up after this long (a first CPU inference can take seconds).
    warmup_call_timeout_s: float = Field(default=30.0, gt=0)
    #: Pause between failed warm-up calls, so a loading server is not hammered.
    warmup_retry_interval_s: float = Field(default=0.2, gt=0)
