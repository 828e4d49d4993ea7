"""Settings of the alarm evaluator and its notifications, read from ``AIMP_*`` variables."""

from __future__ import annotations

from pydantic import Field

from aimp_core.events import TOPIC_ALARMS
from aimp_core.settings import CoreSettings


class AlarmSettings(CoreSettings):
    """How often rules are evaluated, where pod metrics come from, how webhooks retry."""

    # -- evaluation -------------------------------------------------------------------------
    #: Switch the evaluator off (e.g. on replicas that should only serve the API).
    alarm_evaluator_enabled: bool = True
    #: One pass over every rule this often. 5 s keeps "fires within hold + 10 s" with
    #: margin for the ~1 s it takes an event to reach SQL, at one cheap query per rule.
    alarm_eval_interval_s: float = Field(default=5.0, gt=0)
    #: The topic firing and resolved events go to (DESIGN.md).
    alarm_topic: str = TOPIC_ALARMS
    #: Only one stats replica evaluates (a Redis lease), so an alarm fires once. The lease
    #: lasts 3 evaluation intervals so one slow pass does not hand it over.
    alarm_leader_lease_s: float = Field(default=15.0, gt=0)

    # -- pod metrics ------------------------------------------------------------------------
    #: Each UP instance in the registry is scraped at ``<instance>/metrics`` (or at its
    #: ``aimp.metrics_url`` metadata) when a pod rule exists; a scrape gives up after this.
    alarm_scrape_timeout_s: float = Field(default=2.0, gt=0)

    # -- notifications ----------------------------------------------------------------------
    #: Webhook for rules without one of their own; unset means Kafka and history only.
    alarm_webhook_url: str | None = None
    #: A webhook POST gives up after this long (per attempt).
    alarm_webhook_timeout_s: float = Field(default=5.0, gt=0)
    #: Attempts per notification (the first included): 5 attempts with doubling backoff
    #: from 0.5 s ride out ~8 s of receiver trouble, then the failure is logged and counted.
    alarm_webhook_attempts: int = Field(default=5, ge=1)
    #: First wait between attempts, doubled after each failure, capped below.
    alarm_webhook_backoff_initial_s: float = Field(default=0.5, ge=0)
    alarm_webhook_backoff_max_s: float = Field(default=8.0, ge=0)
