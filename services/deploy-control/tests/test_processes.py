"""Tests of local process handling with real processes (no Triton needed)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import psutil

from aimp_core.processes import read_pid
from aimp_deploy_control.processes import spawn, stop_stale, terminate


def _family(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def _wait_children(pid: int, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(_family(pid)) < count + 1 and time.monotonic() < deadline:
        time.sleep(0.02)


async def test_terminate_kills_the_whole_group(tmp_path: Path) -> None:
    """A leader that ignores SIGTERM is killed after the timeout, with its children."""
    script = "trap '' TERM; sleep 60 & sleep 60 & wait"
    proc = spawn(
        ["sh", "-c", script],
        env={"PATH": "/usr/bin:/bin"},
        log_file=tmp_path / "x.log",
        pid_file=tmp_path / "x.pid",
    )
    assert read_pid(tmp_path / "x.pid") is not None
    _wait_children(proc.pid, 2)
    family = _family(proc.pid)
    assert len(family) == 3
    started = time.monotonic()
    code = await terminate(proc, timeout_s=0.5)
    assert code == -signal.SIGKILL
    assert 0.4 < time.monotonic() - started < 5
    _gone, alive = psutil.wait_procs(family, timeout=3)
    assert not alive


async def test_terminate_lets_a_leader_exit_cleanly(tmp_path: Path) -> None:
    """A leader that exits on SIGTERM returns its own exit status."""
    proc = spawn(
        ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.05; done"],
        env={"PATH": "/usr/bin:/bin"},
        log_file=tmp_path / "y.log",
        pid_file=tmp_path / "y.pid",
    )
    await asyncio.sleep(0.2)
    assert await terminate(proc, timeout_s=5) == 0


def test_stop_stale_stops_live_processes_and_clears_files(tmp_path: Path) -> None:
    """Pid files of a dead deploy-control are acted on: live processes stopped, files removed."""
    pid_dir = tmp_path / "run" / "pods"
    live = spawn(
        ["sleep", "60"],
        env={"PATH": "/usr/bin:/bin"},
        log_file=tmp_path / "a.log",
        pid_file=pid_dir / "iris-0-sidecar.pid",
    )
    done = spawn(
        ["true"],
        env={"PATH": "/usr/bin:/bin"},
        log_file=tmp_path / "b.log",
        pid_file=pid_dir / "iris-0-triton.pid",
    )
    done.wait()
    (pid_dir / "junk.pid").write_text("not json")
    assert stop_stale(pid_dir, timeout_s=5) == ["iris-0-sidecar"]
    live.wait(timeout=5)  # psutil may have reaped it already, so the code is not checked
    assert not psutil.pid_exists(live.pid)
    assert list(pid_dir.glob("*.pid")) == []
