"""Gateway settings, read from ``AIMP_GATEWAY_*`` (and the core ``AIMP_*``) variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

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

    # -- identity: refresh tokens, revocation, key rotation, lockout, external IdP ----
    #: A console sign-in's refresh token lives a working day; each use rotates it.
    gateway_refresh_token_ttl_s: int = Field(default=8 * 3600, gt=0)
    #: No rotation extends a sign-in past a week: then the user types the password again.
    gateway_refresh_family_max_s: int = Field(default=7 * 24 * 3600, gt=0)
    #: Besides pub/sub, compare the revocation list's version this often: a lost
    #: message still reaches every gateway within 0.5 s (one GET on a local Redis).
    gateway_revocation_poll_s: float = Field(default=0.5, gt=0)
    #: Re-read the signing-key directory this often, so a key rotated by another gateway
    #: sharing AIMP_HOME signs here too within 1 s (a listdir; new files parsed once).
    gateway_keys_poll_s: float = Field(default=1.0, gt=0)
    #: Failed sign-ins (per username or client id) within the window that lock it:
    #: 5 in 5 minutes stops online guessing while forgiving a few typos.
    gateway_lockout_max_failures: int = Field(default=5, ge=1)
    gateway_lockout_window_s: float = Field(default=300.0, gt=0)
    #: How long a locked name stays locked (15 minutes, OWASP's usual figure).
    gateway_lockout_lock_s: float = Field(default=900.0, gt=0)
    #: After the second failure the next try waits this, doubling per failure up to the max.
    gateway_lockout_base_delay_s: float = Field(default=1.0, ge=0)
    gateway_lockout_max_delay_s: float = Field(default=30.0, ge=0)
    #: An external OpenID provider whose tokens are accepted too (unset: none). Its
    #: issuer, JWKS URL and the audience its tokens must carry for aimp.
    gateway_external_issuer: str | None = None
    gateway_external_jwks_url: str | None = None
    gateway_external_audience: str | None = None
    #: Its signature algorithms (asymmetric only; HS* and none are always refused).
    gateway_external_algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    #: The claim whose values map to aimp roles (dotted path, e.g. realm_access.roles),
    #: and the map as JSON, e.g. {"ml-admins": ["admin"], "ml-apps": ["invoker"]}.
    gateway_external_role_claim: str = "groups"
    gateway_external_role_map: dict[str, list[str]] = Field(default_factory=dict)
    #: The claim naming the calling application (throttle and stats client id).
    gateway_external_client_claim: str = "azp"
    #: Re-fetch its JWKS this often (and soon after an unknown key id appears).
    gateway_external_jwks_refresh_s: float = Field(default=300.0, gt=0)

    # -- discovery (the registry) --------------------------------------------------------
    #: Only for a registry without the change stream (e.g. a Netflix Eureka server):
    #: DESIGN.md wants registry changes seen within 1 s, so poll GET /eureka/apps every 1 s.
    gateway_registry_poll_s: float = 1.0
    #: In poll mode, try the change stream again this often (the registry may be upgraded).
    gateway_registry_stream_retry_s: float = 60.0
    #: First and last reconnect delay after the stream is lost (doubling, with jitter):
    #: a blip costs ~50 ms of staleness, a long outage one attempt every 5 s.
    gateway_registry_backoff_min_s: float = 0.05
    gateway_registry_backoff_max_s: float = 5.0
    #: At start, wait this long for the first instances before serving (calls route at once).
    gateway_registry_start_wait_s: float = 3.0

    # -- passive failure detection (outlier ejection) ------------------------------------
    #: A refused connection means no listener: one is proof enough of death.
    gateway_outlier_consecutive_connect_failures: int = Field(default=1, ge=1)
    #: Resets and timeouts after the request was sent can be one slow call: wait for 3.
    gateway_outlier_consecutive_gateway_errors: int = Field(default=3, ge=1)
    #: A pod answering 5xx is alive; 5 in a row (Envoy's default) says it is broken.
    #: 503 is not counted: live sidecars answer it to shed load and while draining.
    gateway_outlier_consecutive_5xx: int = Field(default=5, ge=1)
    #: First ejection (Envoy: 30 s); short because a probe must pass before it returns.
    gateway_outlier_base_ejection_s: float = Field(default=5.0, gt=0)
    #: Ejections in a row double up to this (Envoy's max_ejection_time default is 300 s;
    #: a minute keeps a recovered pod from idling long).
    gateway_outlier_max_ejection_s: float = Field(default=60.0, gt=0)
    #: At most this share of a service's UP instances out at once (and never the last).
    gateway_outlier_max_ejected_percent: float = Field(default=50.0, ge=0, le=100)

    # -- routing ---------------------------------------------------------------------------
    #: Add ``x-aimp-instance: <registry instance id>`` to forwarded answers. Off by
    #: default: instance ids name internal hosts and ports; the request event carries it.
    gateway_instance_header: bool = False
    #: This gateway's zone (``AIMP_GATEWAY_ZONE``): services whose policy is zone-aware
    #: send calls only to instances with the same ``aimp.zone`` while any is routable
    #: (cross-zone hops cost latency and money). Unset: no preference, as on a laptop.
    gateway_zone: str | None = None

    # -- upstream calls ---------------------------------------------------------------
    #: A pod on the same network accepts in well under 2 s; longer means it is gone.
    gateway_upstream_connect_timeout_s: float = 2.0
    #: Covers slow model inference while still freeing a stuck connection.
    gateway_upstream_total_timeout_s: float = 30.0
    #: Pooled keep-alive connections across all pods; bounds file descriptors.
    gateway_upstream_max_connections: int = 1000
    #: Idle pooled connections are not reused after this: below the 5 s after which
    #: uvicorn (the sidecar) and cpp-httplib close idle connections, so a call never
    #: goes out on a connection the pod is closing (a POST could not be retried).
    gateway_upstream_keepalive_s: float = Field(default=4.0, gt=0)
    #: Largest request body accepted (64 MiB covers big tensors, bounds memory per call).
    gateway_max_body_bytes: int = 64 * 1024 * 1024
    #: Answers larger than this, without a length (chunked) or of type text/event-stream
    #: are passed on as they arrive instead of read whole: memory per call stays bounded
    #: and token streams reach the caller at once. 1 MiB keeps JSON answers on the
    #: one-read fast path.
    gateway_stream_threshold_bytes: int = Field(default=1024 * 1024, ge=0)
    #: A streamed answer may pause this long between pieces (an LLM thinking between
    #: tokens); its total length is not bounded, unlike a buffered answer's.
    gateway_stream_idle_timeout_s: float = Field(default=60.0, gt=0)

    # -- protection of the gateway itself (slow or greedy clients) -------------------------
    #: The whole request body must arrive within this: 64 MiB at ~3 MB/s, so only a client
    #: trickling its body on purpose (or a dead link) is cut off with 408.
    gateway_body_timeout_s: float = Field(default=20.0, gt=0)
    #: The request line and headers must arrive within this (slowloris): 408 and close.
    gateway_head_timeout_s: float = Field(default=10.0, gt=0)
    #: Request line plus headers (431 above): 64 KiB holds any sane tokens and cookies.
    gateway_max_head_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Header lines per request (431 above); Apache and Go allow 100.
    gateway_max_header_count: int = Field(default=100, ge=10)
    #: Open connections plus in-flight calls per process beyond which calls get 503: below
    #: the usual 65536 file descriptors, leaving room for upstream and Redis connections.
    gateway_max_connections: int = Field(default=20_000, ge=1)
    #: Bind the port with SO_REUSEPORT so several gateway processes (each with its own
    #: AIMP_HOME) share it and the kernel spreads connections over them, like nginx's
    #: worker processes; one Python process uses one core.
    gateway_reuse_port: bool = False

    # -- live configuration (the config center) ----------------------------------------------
    #: Besides pub/sub, read the announced configuration version this often: a lost
    #: message still applies within 1 s (issue 4); a GET on a local Redis is ~0.1 ms.
    gateway_config_poll_s: float = Field(default=0.5, gt=0)
    #: Compare with SQL's newest version this often as well, for a change whose
    #: announcement never reached Redis (down at the writer); one indexed query.
    gateway_config_sql_poll_s: float = Field(default=5.0, gt=0)

    # -- data backflow (sampled payloads; rates set through the stats service) ------------
    #: Sampled bodies above this are left out of the record (the call itself is kept):
    #: 256 KiB holds typical JSON inference payloads without flooding Kafka with tensors.
    gateway_backflow_max_body_bytes: int = Field(default=256 * 1024, ge=0)
    #: The rates' version in Redis is polled this often in case a change message was
    #: missed; DESIGN.md wants a change applied within 1 s.
    gateway_backflow_poll_s: float = Field(default=1.0, gt=0)

    # -- throttle ------------------------------------------------------------------------
    #: The default per-client limit, used when no policy or plan of the throttle service
    #: covers a client: calls per second, generous so it only stops runaway clients.
    gateway_rate_per_s: float = 1000.0
    #: Calls a client may send at once on top of the steady rate (default limit).
    gateway_rate_burst: int = 200
    #: A throttle check must never hang a call: a local Redis answers in well under 1 ms.
    gateway_redis_socket_timeout_s: float = 0.25
    #: The default limit when Redis is down: "admit through the local limiter" (open)
    #: rather than "refuse every call" (closed). Policies say it for themselves.
    gateway_throttle_fail_open: bool = True
    #: While Redis is away, probe it this often; limits are exact again this soon after
    #: it returns (the issue asks for 2 s).
    gateway_throttle_probe_interval_s: float = Field(default=0.25, gt=0)
    #: Heartbeat into Redis this often, so every gateway knows how many share the limits.
    gateway_throttle_heartbeat_s: float = Field(default=1.0, gt=0)
    #: A gateway silent this long no longer counts as live (three missed heartbeats).
    gateway_throttle_member_ttl_s: float = Field(default=3.0, gt=0)
    #: Concurrency leases last this long and are renewed every third of it while the call
    #: runs: a crashed gateway's slots come free within it.
    gateway_throttle_lease_ttl_s: float = Field(default=10.0, gt=0)
    #: Check the rules' version this often besides pub/sub: a missed message still
    #: applies within 1 s (DESIGN.md).
    gateway_throttle_rules_poll_s: float = Field(default=0.5, gt=0)
    #: Off only to measure the throttle's own cost (bench/throttle.py) or behind another
    #: limiter; every call then skips the check.
    gateway_throttle_enabled: bool = True
    #: The throttle service the admin API under /admin/throttle/ is forwarded to; unset
    #: means http://127.0.0.1:$AIMP_THROTTLE_PORT (the local stack).
    gateway_throttle_url: str | None = None
    throttle_port: int = DEFAULT_PORTS["throttle"]

    @property
    def signing_key_path(self) -> Path:
        return self.gateway_signing_key_file or self.home / "keys" / "gateway-signing.pem"

    @property
    def throttle_base_url(self) -> str:
        return (self.gateway_throttle_url or f"http://127.0.0.1:{self.throttle_port}").rstrip("/")

    @property
    def credentials_path(self) -> Path:
        return self.gateway_credentials_file or self.home / "credentials.json"
