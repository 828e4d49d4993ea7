"""What a producer sent recently, and whether the broker has since lost it (pure logic).

Kafka never moves a partition's offsets backwards and never changes a topic's
partition count on its own; either means the log was re-created (a broker with
memory storage restarted, or the topic was deleted). The ledger notices both,
and keeps the records acknowledged in the last ``retain_s`` (at most
``retain_max``) so that the producer can send them again.
"""

from __future__ import annotations

from collections import deque

from .spool import Record

#: (topic, partition), records in the batch, base offset the broker gave the batch
Ack = tuple[tuple[str, int], int, int]


class AckLedger:
    """Recently acknowledged records, next offsets per partition and partition counts."""

    def __init__(self, retain_s: float, retain_max: int) -> None:
        self.retain_s = retain_s
        self.retain_max = retain_max
        self._retained: deque[tuple[float, Record]] = deque()
        self._next_offset: dict[tuple[str, int], int] = {}
        self._partitions: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._retained)

    def partition_count(self, topic: str, count: int) -> bool:
        """Note the topic's partition count; True if it changed (the topic was re-created)."""
        known = self._partitions.get(topic)
        self._partitions[topic] = count
        return known is not None and known != count

    def acked(self, records: list[Record], acks: list[Ack], now: float) -> bool:
        """Keep ``records`` (acknowledged at ``now``); True if an offset went backwards."""
        went_back = False
        for tp, n, base in acks:
            expected = self._next_offset.get(tp)
            went_back = went_back or (expected is not None and base < expected)
            self._next_offset[tp] = base + n
        retained = self._retained
        retained.extend((now, record) for record in records)
        horizon = now - self.retain_s
        while retained and (len(retained) > self.retain_max or retained[0][0] < horizon):
            retained.popleft()
        return went_back

    def take_lost(self, now: float) -> list[Record]:
        """Records acknowledged within ``retain_s`` of ``now``, oldest first; starts afresh."""
        horizon = now - self.retain_s
        lost = [record for at, record in self._retained if at >= horizon]
        self._retained.clear()
        self._next_offset.clear()
        self._partitions.clear()
        return lost
