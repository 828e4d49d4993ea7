"""Reading local log files: the last N lines (from the end), and following new output.

Memory stays bounded: a tail reads backwards at most ``lines x max_line_bytes`` bytes,
a follow reads at most :data:`CHUNK_BYTES` per poll and keeps at most one partial line,
and any line longer than ``max_line_bytes`` is cut into pieces of that size.

A followed file may be truncated (its size drops below what was read: reading starts
again at its beginning) or replaced (a rotation renames it and a new file appears at
the path: what is left of the old file is read to its end, then the new one from its
beginning). deploy-control's own processes append to their log, across restarts too.

The blocking parts (:func:`tail_file`, :meth:`LogFollower.poll`) run in a thread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: Bytes read per step, backwards for a tail and forwards per follow poll.
CHUNK_BYTES = 64 * 1024


def _cut(line: bytes, max_line_bytes: int) -> list[bytes]:
    """``line`` without a trailing CR, in pieces of at most ``max_line_bytes``."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) <= max_line_bytes:
        return [line]
    return [line[i : i + max_line_bytes] for i in range(0, len(line), max_line_bytes)]


class LineSplitter:
    """Turns chunks of a byte stream into lines (pure; at most one partial line kept)."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk`` (without their newline)."""
        *complete, rest = (self._pending + chunk).split(b"\n")
        out = [piece for line in complete for piece in _cut(line, self.max_line_bytes)]
        while len(rest) >= self.max_line_bytes:  # an endless line: hand it out in pieces
            out.append(rest[: self.max_line_bytes])
            rest = rest[self.max_line_bytes :]
        self._pending = rest
        return out

    def flush(self) -> list[bytes]:
        """The partial line left at the end of the stream, if any."""
        rest, self._pending = self._pending, b""
        return _cut(rest, self.max_line_bytes) if rest else []


@dataclass(frozen=True)
class Tail:
    #: The last complete lines, oldest first, without their newlines.
    lines: list[bytes]
    #: Output after the last newline (a line being written), maybe empty.
    partial: bytes
    #: Offset just after the last newline: where following continues.
    end: int

    def text(self) -> bytes:
        """Lines and partial line as the file has them (newline-terminated lines)."""
        return b"".join(line + b"\n" for line in self.lines) + self.partial


def tail_file(path: Path, lines: int, *, max_line_bytes: int) -> Tail:
    """The last ``lines`` complete lines of ``path``, reading backwards from its end.

    A missing file has no lines (a process that has not written yet).
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; the size is read from the handle
    except FileNotFoundError:
        return Tail([], b"", 0)
    with f:
        size = os.fstat(f.fileno()).st_size
        budget = max(lines, 1) * (max_line_bytes + 1) + max_line_bytes
        start, data = size, b""
        # Read back until ``lines`` newlines lie before the partial line, the file's start,
        # or the byte budget (then the oldest line may be cut: it is dropped below).
        while start > 0 and data.count(b"\n") <= lines and size - start < budget:
            step = min(CHUNK_BYTES, start, budget - (size - start))
            start -= step
            f.seek(start)
            data = f.read(step) + data
    cut = data.rfind(b"\n")
    partial = data[cut + 1 :]
    complete = data[: cut + 1] if cut >= 0 else b""
    found = complete.split(b"\n")[:-1] if complete else []
    if start > 0 and found:
        found = found[1:]  # the first piece may begin mid-line
    pieces = [piece for line in found for piece in _cut(line, max_line_bytes)]
    return Tail(pieces[-lines:] if lines > 0 else [], partial, size - len(partial))


class LogFollower:
    """Follows one log file from an offset; :meth:`poll` returns the lines added since."""

    def __init__(self, path: Path, offset: int, *, max_line_bytes: int) -> None:
        self.path = path
        self.offset = offset
        self._split = LineSplitter(max_line_bytes)
        self._file: BinaryIO | None = None
        self._ident: tuple[int, int] | None = None

    def _open(self) -> bool:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            return False
        st = os.fstat(self._file.fileno())
        self._ident = (st.st_dev, st.st_ino)
        return True

    def flush(self) -> list[bytes]:
        """The partial line read last, if any (at the end of following)."""
        return self._split.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _read(self) -> tuple[list[bytes], bytes]:
        """(a partial line ended by a truncation, the next bytes at the offset)."""
        assert self._file is not None
        ended: list[bytes] = []
        size = os.fstat(self._file.fileno()).st_size
        if size < self.offset:  # truncated in place: what is there now is new output
            ended = self._split.flush()
            self.offset = 0
        if size == self.offset:
            return ended, b""
        self._file.seek(self.offset)
        data = self._file.read(min(CHUNK_BYTES, size - self.offset))
        self.offset += len(data)
        return ended, data

    def _replaced(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed away; the new file is not there yet: keep the old one
        return (st.st_dev, st.st_ino) != self._ident

    def poll(self) -> tuple[list[bytes], bool]:
        """(new complete lines, whether more output is waiting beyond this read)."""
        if self._file is None and not self._open():
            return [], False
        ended, data = self._read()
        if data or ended:
            return ended + self._split.feed(data), True
        if self._replaced():
            lines = self._split.flush()  # the old file's last line had no newline
            self.close()
            self.offset = 0
            return lines, True
        return [], False


async def follow_file(
    path: Path,
    offset: int,
    *,
    max_line_bytes: int,
    poll_interval_s: float,
    until: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[bytes]:
    """Lines written to ``path`` after ``offset``, as they come; ends once ``until()``
    is true and everything written so far was read, or when the consumer stops."""
    follower = LogFollower(path, offset, max_line_bytes=max_line_bytes)
    try:
        while True:
            finished = until()  # read before the last drain, so no output is lost
            lines, more = await asyncio.to_thread(follower.poll)
            for line in lines:
                yield line
            if more:
                continue
            if finished:
                for line in follower.flush():
                    yield line
                return
            await sleep(poll_interval_s)
    finally:
        follower.close()
