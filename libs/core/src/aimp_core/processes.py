"""Detached background processes with pid files that survive the CLI's exit.

A pid file records the pid and the process's start time, so a pid the OS has
since given to another program is never mistaken for ours (or killed).
Pid files are JSON: ``{"pid": 123, "started_at": 1700000000.5}`` (``started_at``
is psutil's ``create_time()``). `aimp down` kills whatever such files under
``$AIMP_HOME/run`` (and ``run/pods``) name, so every spawner must write them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class PidRecord:
    pid: int
    started_at: float

    def process(self) -> psutil.Process | None:
        """The live process this record names, or None if it is gone or reused."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.started_at) > 1.0 or proc.status() == "zombie":
                return None
            return proc
        except psutil.Error:
            return None


def read_pid(path: Path) -> PidRecord | None:
    try:
        data = json.loads(path.read_text())
        return PidRecord(int(data["pid"]), float(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_pid(path: Path, pid: int) -> PidRecord:
    record = PidRecord(pid, psutil.Process(pid).create_time())
    path.write_text(json.dumps({"pid": record.pid, "started_at": record.started_at}))
    return record


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], log_file: Path, pid_file: Path, cwd: Path
) -> PidRecord:
    """Start ``argv`` in its own session, output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    return write_pid(pid_file, proc.pid)


def stop(record: PidRecord, *, timeout_s: float = 20.0) -> bool:
    """SIGTERM the process's group, wait, then SIGKILL what is left. True if it was running."""
    proc = record.process()
    if proc is None:
        return False
    family = _family(proc)
    _signal_group(record.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=timeout_s)
    if alive:
        _signal_group(record.pid, signal.SIGKILL)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
    return True


def _family(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_until(predicate: object, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(interval_s)
    return False
