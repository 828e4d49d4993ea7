"""An append-only disk spool of Kafka records, replayed in order (used by EventPublisher).

Layout: one directory per process, holding segment files ``<20-digit id>.seg``
read in id order, a ``<id>.pos`` file per partly replayed segment (how many bytes
of it were delivered), and ``.lock`` (an exclusive ``flock``: two processes never
share a spool). A record is ``crc32 u32 | topic len u16 | key len u16 | value len
u32`` (little-endian) followed by the three byte strings; the checksum covers the
lengths and the bytes, so a record torn by a crash is found and cut off on open.

Durability: with ``fsync=True`` (the default) every append is fsynced before
:meth:`Spool.append` returns, so a process crash or power loss loses at most the
batch being written. Positions (``.pos``) are not fsynced: after a crash a
segment may be replayed from an earlier point, which only repeats events that
consumers deduplicate by ``event_id``.

Capacity: ``max_bytes`` bounds the files on disk; records that do not fit are
refused (the caller counts them as dropped) until replay frees space.

Every method does blocking file I/O: call them from a worker thread
(``asyncio.to_thread``), never on an event loop.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: (topic, key, value) as sent to Kafka.
Record = tuple[str, bytes, bytes]

_HEAD = struct.Struct("<IHHI")
_LENGTHS = struct.Struct("<HHI")
#: Ids start high so that records put back in front (:meth:`Spool.prepend`) get
#: smaller ids that still sort first as 20-digit names.
_FIRST_ID = 10**15
#: Bytes read from a segment at a time while replaying.
_READ_WINDOW = 1 << 20


@dataclass(frozen=True)
class Mark:
    """Where a :meth:`Spool.read` stopped: ack it once those records are delivered."""

    segment: int
    end: int
    records: int


def encode(records: list[Record]) -> bytes:
    parts: list[bytes] = []
    for topic, key, value in records:
        t = topic.encode()
        lengths = _LENGTHS.pack(len(t), len(key), len(value))
        crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(t, zlib.crc32(lengths))))
        parts += (struct.pack("<I", crc), lengths, t, key, value)
    return b"".join(parts)


def decode(data: bytes, limit: int | None = None) -> tuple[list[tuple[Record, int]], int]:
    """Up to ``limit`` records in ``data`` with the offset after each, and where valid data
    ends (a torn or corrupt record ends it)."""
    out: list[tuple[Record, int]] = []
    pos = 0
    while pos + _HEAD.size <= len(data) and (limit is None or len(out) < limit):
        crc, tl, kl, vl = _HEAD.unpack_from(data, pos)
        body = pos + _HEAD.size
        end = body + tl + kl + vl
        if end > len(data):
            break
        t, k, v = (
            data[body : body + tl],
            data[body + tl : body + tl + kl],
            data[body + tl + kl : end],
        )
        lengths = data[pos + 4 : body]
        if zlib.crc32(v, zlib.crc32(k, zlib.crc32(t, zlib.crc32(lengths)))) != crc:
            break
        out.append(((t.decode(), k, v), end))
        pos = end
    return out, pos


class SpoolLocked(RuntimeError):
    """Another process holds this spool directory."""


class Spool:
    """Segments of records on disk; append at the tail, read and ack from the head."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        fsync: bool = True,
    ) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.records = 0
        self.bytes = 0
        self._segments: list[int] = []
        self._pos: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self._lock_fd: int | None = None

    # -- opening and closing ----------------------------------------------------------

    def open(self) -> Spool:
        """Lock the directory, cut torn tails, count what is waiting; raises SpoolLocked."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolLocked(f"spool {self.dir} is in use by another process") from None
        self._lock_fd = fd
        for path in sorted(self.dir.glob("*.seg")):
            self._recover(int(path.stem), path)
        for pos_file in self.dir.glob("*.pos"):
            if int(pos_file.stem) not in self._sizes:
                pos_file.unlink(missing_ok=True)
        if self.records:
            log.info("spool %s holds %d events to replay", self.dir, self.records)
        return self

    def _recover(self, seg: int, path: Path) -> None:
        data = path.read_bytes()
        pos = self._read_pos(seg)
        records, valid_end = decode(data)
        if valid_end < len(data):
            log.warning(
                "spool segment %s: cut %d torn bytes at its end", path, len(data) - valid_end
            )
            with open(path, "r+b") as f:
                f.truncate(valid_end)
        waiting = sum(1 for _, end in records if end > pos)
        if waiting == 0:
            self._drop(seg)
            return
        self._segments.append(seg)
        self._pos[seg] = pos
        self._sizes[seg] = valid_end
        self.records += waiting
        self.bytes += valid_end

    def close(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writing ----------------------------------------------------------------------

    def append(self, records: list[Record]) -> int:
        """Add records after everything spooled; returns how many fit under max_bytes."""
        fitting = self._fitting(records)
        if fitting:
            tail = self._segments[-1] if self._segments else _FIRST_ID - 1
            if not self._segments or self._sizes[tail] >= self.segment_bytes:
                tail += 1
                self._segments.append(tail)
                self._pos[tail] = 0
                self._sizes[tail] = 0
            self._write(tail, fitting)
        return len(fitting)

    def prepend(self, records: list[Record]) -> int:
        """Put records before everything spooled (a batch that failed while newer ones were
        spooled); returns how many fit under max_bytes."""
        fitting = self._fitting(records)
        if fitting:
            head = (self._segments[0] if self._segments else _FIRST_ID) - 1
            self._segments.insert(0, head)
            self._pos[head] = 0
            self._sizes[head] = 0
            self._write(head, fitting)
        return len(fitting)

    def _fitting(self, records: list[Record]) -> list[Record]:
        room = self.max_bytes - self.bytes
        out: list[Record] = []
        for record in records:
            size = _HEAD.size + len(record[0].encode()) + len(record[1]) + len(record[2])
            if size > room:
                break
            room -= size
            out.append(record)
        return out

    def _write(self, seg: int, records: list[Record]) -> None:
        data = encode(records)
        with open(self._path(seg), "ab", buffering=0) as f:
            f.write(data)
            if self.fsync:
                os.fsync(f.fileno())
        self._sizes[seg] += len(data)
        self.bytes += len(data)
        self.records += len(records)

    # -- reading ----------------------------------------------------------------------

    def read(self, max_records: int) -> tuple[list[Record], Mark | None]:
        """Up to ``max_records`` from the head, oldest first, and the mark to ack them."""
        while self._segments:
            seg = self._segments[0]
            pos = self._pos[seg]
            if pos >= self._sizes[seg]:
                if len(self._segments) == 1:
                    return [], None
                self._drop(seg)
                continue
            remaining = self._sizes[seg] - pos
            window = min(remaining, _READ_WINDOW)
            with open(self._path(seg), "rb") as f:
                while True:
                    f.seek(pos)
                    found, _ = decode(f.read(window), max_records)
                    if found or window >= remaining:
                        break
                    window = min(remaining, window * 4)  # one record larger than the window
            if not found:  # unreadable remainder (cannot happen after recovery)
                log.error("spool segment %s is unreadable after byte %d; skipping it", seg, pos)
                self._pos[seg] = self._sizes[seg]
                continue
            return [r for r, _ in found], Mark(seg, pos + found[-1][1], len(found))
        return [], None

    def ack(self, mark: Mark) -> None:
        """Forget the records a read returned (they reached Kafka)."""
        if mark.segment not in self._pos:
            return
        self._pos[mark.segment] = mark.end
        self.records = max(0, self.records - mark.records)
        seg_done = mark.end >= self._sizes[mark.segment]
        if seg_done and (len(self._segments) > 1 or self.records == 0):
            self._drop(mark.segment)
        else:
            self._path(mark.segment).with_suffix(".pos").write_text(str(mark.end))

    def _drop(self, seg: int) -> None:
        self.bytes -= self._sizes.pop(seg, 0)
        self._pos.pop(seg, None)
        if seg in self._segments:
            self._segments.remove(seg)
        self._path(seg).unlink(missing_ok=True)
        self._path(seg).with_suffix(".pos").unlink(missing_ok=True)
        self.bytes = max(0, self.bytes)

    def _read_pos(self, seg: int) -> int:
        try:
            return int(self._path(seg).with_suffix(".pos").read_text())
        except (OSError, ValueError):
            return 0

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:020d}.seg"
