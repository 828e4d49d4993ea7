"""Reading log files: tails from the end, following new output, truncation and rotation."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from aimp_deploy_control.pod_logs import LineSplitter, LogFollower, follow_file, tail_file

MAX = 256


def _write_lines_with_a_child(path: Path, count: int) -> None:
    """A real process writes ``count`` numbered lines to ``path`` (as a pod would)."""
    code = f"import sys\nfor i in range({count}): print(f'line {{i}}', flush=True)"
    with open(path, "ab") as out:
        subprocess.run([sys.executable, "-c", code], stdout=out, check=True, timeout=30)


def test_tail_returns_the_last_lines_of_a_large_file(tmp_path: Path) -> None:
    """The last N lines come back in order, read from the end of a file of many blocks."""
    log = tmp_path / "server.log"
    _write_lines_with_a_child(log, 20_000)
    tail = tail_file(log, 3, max_line_bytes=MAX)
    assert tail.lines == [b"line 19997", b"line 19998", b"line 19999"]
    assert tail.partial == b"" and tail.end == log.stat().st_size
    assert tail_file(log, 0, max_line_bytes=MAX).lines == []


def test_tail_of_a_short_file_partial_line_and_missing_file(tmp_path: Path) -> None:
    """Asking for more lines than exist gives them all; a line being written is kept apart."""
    log = tmp_path / "x.log"
    log.write_bytes(b"a\r\nb\nhalf")
    tail = tail_file(log, 10, max_line_bytes=MAX)
    assert tail.lines == [b"a", b"b"] and tail.partial == b"half"
    assert tail.end == len(b"a\r\nb\n")
    assert tail.text() == b"a\nb\nhalf"
    assert tail_file(tmp_path / "gone.log", 5, max_line_bytes=MAX).lines == []


def test_tail_cuts_overlong_lines(tmp_path: Path) -> None:
    """A line longer than the cap comes back in pieces of at most the cap."""
    log = tmp_path / "x.log"
    log.write_bytes(b"x" * (MAX * 2 + 10) + b"\nend\n")
    tail = tail_file(log, 10, max_line_bytes=MAX)
    assert [len(piece) for piece in tail.lines] == [MAX, MAX, 10, 3]


@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_splitter_gives_the_same_lines_however_the_stream_is_chunked(
    lines: list[bytes], cuts: list[int]
) -> None:
    """Feeding any chunking of a stream yields its lines, none longer than the cap."""
    stream = b"".join(line + b"\n" for line in lines)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    split = LineSplitter(16)
    got: list[bytes] = []
    for lo, hi in itertools.pairwise(bounds):
        got += split.feed(stream[lo:hi])
    got += split.flush()
    expected = []
    for line in lines:
        line = line.removesuffix(b"\r")
        expected += [line[i : i + 16] for i in range(0, len(line), 16)] or [b""]
    assert got == expected
    assert all(len(piece) <= 16 for piece in got)


def test_follower_reads_new_lines_and_starts_over_after_truncation(tmp_path: Path) -> None:
    """New lines appear on the next poll; a truncated file is read again from its start."""
    log = tmp_path / "pod.log"
    log.write_bytes(b"old 1\nold 2\n")
    follower = LogFollower(log, log.stat().st_size, max_line_bytes=MAX)
    try:
        assert follower.poll() == ([], False)
        with open(log, "ab") as f:
            f.write(b"new 1\nnew ")
        assert follower.poll() == ([b"new 1"], True)
        assert follower.poll() == ([], False)
        log.write_bytes(b"after truncation\n")  # shorter than what was read
        # The line cut short by the truncation comes out as it was, then the new content.
        assert follower.poll() == ([b"new ", b"after truncation"], True)
    finally:
        follower.close()


def test_follower_finishes_a_rotated_file_then_reads_the_new_one(tmp_path: Path) -> None:
    """After a rename-and-recreate rotation, the old file's rest comes first, then the new."""
    log = tmp_path / "pod.log"
    log.write_bytes(b"one\n")
    follower = LogFollower(log, 0, max_line_bytes=MAX)
    try:
        assert follower.poll() == ([b"one"], True)
        with open(log, "ab") as f:
            f.write(b"two\nunfinished")
        log.rename(tmp_path / "pod.log.1")
        log.write_bytes(b"fresh\n")
        seen: list[bytes] = []
        for _ in range(5):
            seen += follower.poll()[0]
        assert seen == [b"two", b"unfinished", b"fresh"]
    finally:
        follower.close()


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


async def test_follow_file_yields_lines_and_ends_when_told(tmp_path: Path) -> None:
    """follow_file yields lines appended while it runs and stops once ``until`` says so."""
    log = tmp_path / "pod.log"
    log.write_bytes(b"before\n")
    done = False
    ticks = 0

    async def sleep(_s: float) -> None:  # each idle poll appends a line, then ends the follow
        nonlocal ticks, done
        ticks += 1
        _append(log, f"tick {ticks}\n".encode() if ticks < 3 else b"last, no newline")
        done = ticks >= 3

    got = [
        line
        async for line in follow_file(
            log,
            log.stat().st_size,
            max_line_bytes=MAX,
            poll_interval_s=0.0,
            until=lambda: done,
            sleep=sleep,
        )
    ]
    assert got == [b"tick 1", b"tick 2", b"last, no newline"]
