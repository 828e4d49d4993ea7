"""File adapter of data backflow: gzip JSON Lines parts per service and date.

Writing: each batch adds one gzip member to the current part of each (service, date)
it touches, then flushes and fsyncs it; concatenated gzip members are one valid gzip
stream (RFC 1952), so ``zcat`` and ``gzip.open`` read a part whole. A process never
appends to a part it did not create (new parts are claimed with ``O_EXCL``), so a
member cut short by a crash can only be the last one of an old part, which readers
skip. A part is closed at ``part_max_bytes``; beyond ``service_max_bytes`` per service
the oldest parts are deleted.

Reading: :func:`iter_lines` yields the JSON lines of one service within a time range,
tolerating such a truncated tail.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backflow_domain import (
    dates_in_range,
    in_range,
    next_part_number,
    part_name,
    part_number,
    partition_date,
)

log = logging.getLogger(__name__)

#: gzip framing for zlib (header and trailer), at the default compression level.
GZIP_WBITS = 31
COMPRESS_LEVEL = 6
READ_CHUNK_BYTES = 256 * 1024


@dataclass
class _Part:
    path: Path
    size: int


class PartitionWriter:
    """Appends records to ``<root>/<service>/<date>/part-NNNN.jsonl.gz`` (one writer per root)."""

    def __init__(self, root: Path, *, part_max_bytes: int, service_max_bytes: int) -> None:
        self.root = root
        self.part_max_bytes = part_max_bytes
        self.service_max_bytes = service_max_bytes
        self._current: dict[tuple[str, str], _Part] = {}
        self._service_bytes: dict[str, int] = {}

    def write(self, records: list[dict[str, Any]]) -> int:
        """Append ``records`` (already redacted) durably; returns compressed bytes written."""
        groups: dict[tuple[str, str], list[bytes]] = {}
        for record in records:
            key = (record["service"], partition_date(record["ts"]))
            line = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
            groups.setdefault(key, []).append(line + b"\n")
        written = 0
        for (service, day), lines in groups.items():
            member = _gzip_member(b"".join(lines))
            part = self._part_for(service, day, len(member))
            with open(part.path, "ab") as f:
                f.write(member)
                f.flush()
                os.fsync(f.fileno())
            part.size += len(member)
            written += len(member)
            self._service_bytes[service] = self._service_total(service) + len(member)
            self._prune(service)
        return written

    def _part_for(self, service: str, day: str, incoming: int) -> _Part:
        part = self._current.get((service, day))
        if part is not None and (part.size == 0 or part.size + incoming <= self.part_max_bytes):
            return part
        directory = self.root / service / day
        directory.mkdir(parents=True, exist_ok=True)
        number = next_part_number(os.listdir(directory))
        while True:
            path = directory / part_name(number)
            try:
                # O_EXCL: two writers sharing a volume never append to the same part.
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640))
                break
            except FileExistsError:
                number += 1
        part = self._current[(service, day)] = _Part(path, 0)
        return part

    def _service_total(self, service: str) -> int:
        if service not in self._service_bytes:
            self._service_bytes[service] = sum(p.stat().st_size for p in self._parts(service))
        return self._service_bytes[service]

    def _parts(self, service: str) -> list[Path]:
        """Every part of ``service``, oldest first (by date, then part number)."""
        base = self.root / service
        if not base.is_dir():
            return []
        found = []
        for day in sorted(d.name for d in base.iterdir() if d.is_dir()):
            for entry in (base / day).iterdir():
                number = part_number(entry.name)
                if number is not None:
                    found.append((day, number, entry))
        return [path for _, _, path in sorted(found)]

    def _prune(self, service: str) -> None:
        if self._service_bytes[service] <= self.service_max_bytes:
            return
        current = {p.path for p in self._current.values()}
        for path in self._parts(service):
            if self._service_bytes[service] <= self.service_max_bytes:
                break
            if path in current:
                continue
            size = path.stat().st_size
            path.unlink()
            self._service_bytes[service] -= size
            log.info("backflow deleted %s: %s over its size cap", path, service)
            if not any(path.parent.iterdir()):
                path.parent.rmdir()


def _gzip_member(data: bytes) -> bytes:
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    return compressor.compress(data) + compressor.flush()


def read_part(path: Path) -> Iterator[bytes]:
    """The lines of one part (newline stripped); a truncated last member is skipped."""
    pending = b""
    decompressor = zlib.decompressobj(GZIP_WBITS)
    started = False
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK_BYTES):
            while chunk:
                started = True
                try:
                    data = decompressor.decompress(chunk)
                except zlib.error as exc:
                    log.warning("backflow part %s is damaged, rest skipped: %s", path, exc)
                    return
                pending += data
                *lines, pending = pending.split(b"\n")
                yield from (line for line in lines if line)
                if decompressor.eof:
                    chunk = decompressor.unused_data
                    decompressor = zlib.decompressobj(GZIP_WBITS)
                    started = False
                else:
                    chunk = b""
    if started and not decompressor.eof:
        log.warning("backflow part %s ends in a cut-short write; its last lines are skipped", path)


def iter_lines(
    root: Path, service: str, since: float | None, until: float | None
) -> Iterator[bytes]:
    """Every stored JSON line of ``service`` with ``since <= ts < until``, oldest day first."""
    base = root / service
    if not base.is_dir():
        return
    for day in dates_in_range((d.name for d in base.iterdir()), since, until):
        parts = sorted(
            (n, p) for p in (base / day).iterdir() if (n := part_number(p.name)) is not None
        )
        for _, path in parts:
            for line in read_part(path):
                try:
                    ts = float(json.loads(line)["ts"])
                except (ValueError, KeyError, TypeError):
                    continue
                if in_range(ts, since, until):
                    yield line


def gzip_stream(lines: Iterator[bytes], *, chunk_bytes: int = 64 * 1024) -> Iterator[bytes]:
    """``lines`` as one gzip stream of JSON Lines, in chunks of about ``chunk_bytes``."""
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    buffer: list[bytes] = []
    size = 0
    for line in lines:
        buffer.append(line + b"\n")
        size += len(line) + 1
        if size >= chunk_bytes:
            out = compressor.compress(b"".join(buffer))
            buffer, size = [], 0
            if out:
                yield out
    yield compressor.compress(b"".join(buffer)) + compressor.flush()
