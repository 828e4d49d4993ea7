"""Settings of pod logs and cold-start measurement, from ``AIMP_DEPLOY_CONTROL_*`` variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PodObserveSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIMP_DEPLOY_CONTROL_", extra="ignore")

    # -- logs -------------------------------------------------------------------------------
    #: Lines a log request returns when it names no ``tail``: a screenful and some context.
    log_tail_default_lines: int = Field(default=100, ge=1)
    #: Most lines one request may ask for; at the line cap below that bounds a request's
    #: memory to ~160 MiB in the worst case, ~1 MiB for typical 100-byte lines.
    log_tail_max_lines: int = Field(default=10_000, ge=1)
    #: A longer line is cut into pieces of this size, so one endless line (a process
    #: printing without newlines) cannot grow a reader's buffer without bound.
    log_line_max_bytes: int = Field(default=16 * 1024, ge=256)
    #: How often a live tail of a local log file looks for new output; 0.25 s feels live
    #: to a person and costs one stat() per open tail per tick.
    log_follow_poll_interval_s: float = Field(default=0.25, gt=0)

    # -- cold start ---------------------------------------------------------------------------
    #: How often a starting replica's server readiness and registry status are probed
    #: while its cold start is measured; it bounds the phases' resolution. 50 ms is ~20
    #: local calls a second for the few seconds a start takes.
    cold_start_probe_interval_s: float = Field(default=0.05, gt=0)
    #: A start not registered after this long is recorded as abandoned (the supervisor
    #: keeps managing the pod); 10 minutes covers loading a large model from disk.
    cold_start_timeout_s: float = Field(default=600.0, gt=0)
    #: Each readiness or registry probe gives up after this long (local calls answer in
    #: milliseconds; a busy Triton still answers its health check well within 1 s).
    cold_start_probe_timeout_s: float = Field(default=1.0, gt=0)
