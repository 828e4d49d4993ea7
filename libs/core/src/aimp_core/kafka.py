"""Kafka helpers: :class:`EventPublisher` and :func:`ensure_topics`.

The publisher lives in :mod:`aimp_core.publisher` (with its disk spool in
:mod:`aimp_core.spool`, its broker watch in :mod:`aimp_core.broker_watch` and
its restart detection in :mod:`aimp_core.ack_ledger`); this module keeps the
import path every service uses.
"""

from __future__ import annotations

from .kafka_topics import ensure_topics
from .publisher import EventPublisher

__all__ = ["EventPublisher", "ensure_topics"]
