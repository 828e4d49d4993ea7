"""Local child processes: spawn in their own session with pid files, stop by process group.

Pid files use aimp_core.processes' format (pid + start time), so `aimp down` and
a restarted deploy-control can find and stop what a dead deploy-control left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from aimp_core.processes import read_pid, stop, write_pid

log = logging.getLogger(__name__)

#: Roles in the order stale processes are stopped: sidecars first, so they deregister.
STOP_ORDER = ("sidecar", "triton")


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], log_file: Path, pid_file: Path
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as leader of a new process group, output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    write_pid(pid_file, proc.pid)
    return proc


def kill_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a whole process group (the leader and e.g. tritonserver); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """SIGTERM the leader, wait up to ``timeout_s``, then SIGKILL its group; the exit code.

    Only the leader gets SIGTERM: aimp-triton-pod stops its own Triton server in
    order, which signalling tritonserver directly at the same time would disturb.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("process did not stop in time; killing it", extra={"pid": proc.pid})
    # Whatever is left in the group (children of a leader that exited) goes too.
    kill_group(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        await asyncio.to_thread(proc.wait, 5)
    return proc.returncode


def stop_stale(pid_dir: Path, timeout_s: float = 20.0) -> list[str]:
    """Stop every live process a previous deploy-control left in ``pid_dir``; their names."""
    if not pid_dir.is_dir():
        return []
    files = sorted(pid_dir.glob("*.pid"))
    rank = {role: i for i, role in enumerate(STOP_ORDER)}
    files.sort(key=lambda p: rank.get(p.stem.rsplit("-", 1)[-1], len(rank)))
    stopped = []
    for pid_file in files:
        record = read_pid(pid_file)
        if record is not None and stop(record, timeout_s=timeout_s):
            stopped.append(pid_file.stem)
        pid_file.unlink(missing_ok=True)
    return stopped
