"""Settings of the load test, from ``AIMP_DEPLOY_CONTROL_LOADTEST_*`` variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LoadTestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIMP_DEPLOY_CONTROL_LOADTEST_", extra="ignore")

    # -- steps ------------------------------------------------------------------------------
    #: How long each rate is offered; 5 s gives ~100 calls at a slow 20 calls/s, enough
    #: for a p99 that is not one unlucky call, and a whole search stays within ~2 minutes.
    step_duration_s: float = Field(default=5.0, gt=0, le=300)
    #: The first rate tried; 10 calls/s is below what any served model sustains, so the
    #: search starts on the passing side and ramps up.
    start_rps: float = Field(default=10.0, gt=0)
    #: The lowest rate tried and the finest gap bisection resolves.
    min_rps: float = Field(default=1.0, gt=0)
    #: Ramp factor between passing steps: doubling reaches 2000 calls/s from 10 in 8 steps.
    growth: float = Field(default=2.0, gt=1, le=10)
    #: Bisection stops when the failing and passing rates are within 10 % of each other:
    #: finer than run-to-run noise on a shared machine is not worth more steps.
    resolution: float = Field(default=0.1, gt=0, lt=1)
    #: The most steps one search runs (ramp + bisection take ~12 at the defaults).
    max_steps: int = Field(default=25, ge=1, le=200)

    # -- calls ------------------------------------------------------------------------------
    #: One call gives up after this long and counts as failed; far above any sane target,
    #: so it only bounds how long a step can hang on a stalled replica.
    call_timeout_s: float = Field(default=10.0, gt=0)
    #: Calls in flight at once; more are not sent and count as failed (the replica is
    #: far behind by then). Bounds the sockets and memory one load test holds.
    max_in_flight: int = Field(default=512, ge=1, le=10_000)
    #: Reading the model's metadata and the first sample call (a first CPU inference
    #: can take seconds while the model is paged in).
    probe_timeout_s: float = Field(default=30.0, gt=0)

    # -- recommendations --------------------------------------------------------------------
    #: The autoscaling target as a share of the rate one replica sustains: Knative's
    #: default target utilisation (70 %), headroom for bursts while a replica starts.
    autoscale_utilisation: float = Field(default=0.7, gt=0, le=1)
