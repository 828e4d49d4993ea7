"""The disk spool and the ack ledger (real files in a temp dir; no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.ack_ledger import AckLedger
from aimp_core.spool import Spool, SpoolLocked, decode, encode

records = st.lists(
    st.tuples(st.sampled_from(["t1", "t2"]), st.binary(max_size=20), st.binary(max_size=200)),
    max_size=30,
)


def drain(spool: Spool, batch: int = 7) -> list[tuple[str, bytes, bytes]]:
    out = []
    while True:
        got, mark = spool.read(batch)
        if mark is None:
            return out
        out.extend(got)
        spool.ack(mark)


@given(first=records, second=records, front=records)
def test_read_order_is_prepend_then_appends(
    tmp_path_factory: pytest.TempPathFactory,
    first: list[tuple[str, bytes, bytes]],
    second: list[tuple[str, bytes, bytes]],
    front: list[tuple[str, bytes, bytes]],
) -> None:
    """Records come back oldest first: what was put in front, then appends in order."""
    spool = Spool(tmp_path_factory.mktemp("spool"), segment_bytes=300).open()
    spool.append(first)
    spool.append(second)
    spool.prepend(front)
    assert spool.records == len(first) + len(second) + len(front)
    assert drain(spool) == [*front, *first, *second]
    assert spool.records == 0
    spool.close()


def test_survives_a_restart_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    """A new process replays what was not acked; half a record at the end is dropped."""
    spool = Spool(tmp_path).open()
    spool.append([("t", b"k", b"v%d" % i) for i in range(10)])
    _got, mark = spool.read(4)
    assert mark is not None
    spool.ack(mark)
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    with open(segment, "ab") as f:
        f.write(encode([("t", b"k", b"torn")])[:-2])
    again = Spool(tmp_path).open()
    assert again.records == 6
    assert [v for _, _, v in drain(again)] == [b"v%d" % i for i in range(4, 10)]
    assert not list(tmp_path.glob("*.seg")), "fully replayed segments are deleted"


def test_refuses_records_beyond_max_bytes(tmp_path: Path) -> None:
    """When full, append stores what fits and says how many."""
    one = len(encode([("t", b"k", b"x" * 100)]))
    spool = Spool(tmp_path, max_bytes=one * 3).open()
    assert spool.append([("t", b"k", b"x" * 100)] * 5) == 3
    assert spool.append([("t", b"k", b"x" * 100)]) == 0


def test_a_spool_belongs_to_one_process(tmp_path: Path) -> None:
    """A second opener of the same directory is refused."""
    Spool(tmp_path).open()
    with pytest.raises(SpoolLocked):
        Spool(tmp_path).open()


def test_decode_stops_at_corruption() -> None:
    """A flipped byte ends the valid data at the record before it."""
    data = bytearray(encode([("t", b"a", b"1"), ("t", b"b", b"2")]))
    data[-1] ^= 0xFF
    found, end = decode(bytes(data))
    assert [r for r, _ in found] == [("t", b"a", b"1")]
    assert end == found[0][1]


def test_ledger_detects_a_lost_log_and_returns_recent_records() -> None:
    """Offsets going backwards or a changed partition count mean the broker lost its log."""
    ledger = AckLedger(retain_s=30, retain_max=3)
    r = [("t", b"k", b"%d" % i) for i in range(5)]
    assert not ledger.acked(r[:2], [(("t", 0), 2, 0)], now=100)
    assert not ledger.acked(r[2:4], [(("t", 0), 2, 2)], now=110)
    assert ledger.acked(r[4:], [(("t", 0), 1, 0)], now=120)  # offset 0 again
    assert ledger.take_lost(now=135) == r[2:]  # max 3 kept; r[0:2] trimmed
    assert not ledger.partition_count("t", 3)
    assert ledger.partition_count("t", 1)
