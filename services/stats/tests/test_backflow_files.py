"""The backflow file adapter on a real temporary directory."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

from aimp_stats.backflow_files import PartitionWriter, gzip_stream, iter_lines, read_part

DAY1 = 1_700_000_000.0  # 2023-11-14
DAY2 = DAY1 + 86_400  # 2023-11-15


def rec(i: int, ts: float, service: str = "iris", pad: int = 0) -> dict[str, Any]:
    return {"request_id": f"r{i}", "ts": ts, "service": service, "pad": "x" * pad}


def test_records_land_in_service_and_date_partitions(tmp_path: Path) -> None:
    """Each record goes to <service>/<UTC date>/part-0000.jsonl.gz, readable by gzip."""
    writer = PartitionWriter(tmp_path, part_max_bytes=1 << 20, service_max_bytes=1 << 30)
    writer.write([rec(1, DAY1), rec(2, DAY2), rec(3, DAY1, "other")])
    writer.write([rec(4, DAY1)])  # a second gzip member in the same part
    part = tmp_path / "iris" / "2023-11-14" / "part-0000.jsonl.gz"
    with gzip.open(part, "rt") as f:
        assert [json.loads(line)["request_id"] for line in f] == ["r1", "r4"]
    assert (tmp_path / "iris" / "2023-11-15" / "part-0000.jsonl.gz").exists()
    assert (tmp_path / "other" / "2023-11-14" / "part-0000.jsonl.gz").exists()


def test_parts_rotate_at_the_size_cap(tmp_path: Path) -> None:
    """No part grows past the cap: a write that would cross it starts the next part."""
    cap = 4096
    writer = PartitionWriter(tmp_path, part_max_bytes=cap, service_max_bytes=1 << 30)
    for i in range(40):
        # Incompressible padding so each write is a few hundred compressed bytes.
        writer.write([{**rec(i, DAY1), "pad": random.Random(i).randbytes(300).hex()}])
    parts = sorted((tmp_path / "iris" / "2023-11-14").iterdir())
    assert len(parts) > 2
    assert all(p.stat().st_size <= cap for p in parts)
    ids = [json.loads(x)["request_id"] for p in parts for x in read_part(p)]
    assert ids == [f"r{i}" for i in range(40)]


def test_a_new_writer_never_appends_to_an_old_part(tmp_path: Path) -> None:
    """After a restart the next write claims a new part number."""
    PartitionWriter(tmp_path, part_max_bytes=1 << 20, service_max_bytes=1 << 30).write(
        [rec(1, DAY1)]
    )
    PartitionWriter(tmp_path, part_max_bytes=1 << 20, service_max_bytes=1 << 30).write(
        [rec(2, DAY1)]
    )
    names = sorted(p.name for p in (tmp_path / "iris" / "2023-11-14").iterdir())
    assert names == ["part-0000.jsonl.gz", "part-0001.jsonl.gz"]


def test_service_cap_deletes_the_oldest_parts(tmp_path: Path) -> None:
    """Beyond the per-service cap the oldest parts go, and the newest data stays."""
    writer = PartitionWriter(tmp_path, part_max_bytes=1024, service_max_bytes=3000)
    for i in range(30):
        writer.write([{**rec(i, DAY1 + i), "pad": random.Random(i).randbytes(200).hex()}])
    parts = sorted((tmp_path / "iris" / "2023-11-14").iterdir())
    assert sum(p.stat().st_size for p in parts) <= 3000
    ids = [json.loads(x)["request_id"] for x in iter_lines(tmp_path, "iris", None, None)]
    assert ids[-1] == "r29" and "r0" not in ids


def test_a_cut_short_last_member_is_skipped(tmp_path: Path) -> None:
    """A crash mid-write leaves a truncated member; readers keep every whole line before it."""
    writer = PartitionWriter(tmp_path, part_max_bytes=1 << 20, service_max_bytes=1 << 30)
    writer.write([rec(1, DAY1), rec(2, DAY1)])
    part = tmp_path / "iris" / "2023-11-14" / "part-0000.jsonl.gz"
    whole = part.read_bytes()
    writer.write([rec(i, DAY1, pad=2000) for i in range(3, 50)])
    grown = part.read_bytes()
    part.write_bytes(grown[: len(whole) + (len(grown) - len(whole)) // 2])
    ids = [json.loads(x)["request_id"] for x in read_part(part)]
    assert ids[:2] == ["r1", "r2"] and len(ids) < 49


def test_iter_lines_filters_by_time_and_gzip_stream_round_trips(tmp_path: Path) -> None:
    """Export reads only since <= ts < until, and its gzip stream decompresses to those lines."""
    writer = PartitionWriter(tmp_path, part_max_bytes=1 << 20, service_max_bytes=1 << 30)
    writer.write([rec(i, DAY1 + i * 3600) for i in range(48)])
    lines = list(iter_lines(tmp_path, "iris", DAY1 + 3600, DAY1 + 30 * 3600))
    assert [json.loads(x)["request_id"] for x in lines] == [f"r{i}" for i in range(1, 30)]
    blob = b"".join(gzip_stream(iter(lines), chunk_bytes=100))
    assert gzip.decompress(blob).splitlines() == lines
    assert list(iter_lines(tmp_path, "nothing", None, None)) == []
