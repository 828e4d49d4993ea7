"""Resource limits of a local pod's server process, where the OS allows them.

What a replica's ``resources`` ask for becomes, for its inference server process:

* ``cpu`` (cores) -> a CPU affinity of ceil(cpu) CPUs, the least used by other local
  pods first: a cap on how many cores it can run on, not a reservation (pods may share
  a CPU when there are more asked for than the machine has). Linux only
  (``sched_setaffinity``); elsewhere it is skipped. ``nice`` is not used: it orders
  processes by priority, it does not limit one, and every pod would get the same.
* ``memory_mib`` -> ``RLIMIT_DATA`` (heap and other private writable memory; allocations
  beyond it fail). Not ``RLIMIT_AS``: a bare Triton server reserves ~1.2 GiB of
  address space while using ~33 MiB (and CUDA reserves tens of GiB more), so an address
  space cap of 1 GiB aborts it at start, while ``RLIMIT_DATA`` of 200 MiB lets it run
  (measured with the PyTriton tritonserver 2.x on Linux 6.x). The limit is per process,
  not per pod: a child (tritonserver under aimp-triton-pod) gets its own copy of it.
* GPUs assigned to the pod -> ``CUDA_VISIBLE_DEVICES`` (with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
  so CUDA numbers GPUs as NVML and nvidia-smi do); nothing changes without an assignment.

Limits are applied by a launcher that sets them on itself and then ``exec``s the server
(``python -m aimp_deploy_control.limits --cpus 0,1 -- argv...``): the pid stays the
server's, the limits are in place before its first instruction, and no code runs
between fork and exec in deploy-control (``preexec_fn`` is unsafe with threads).
This module imports nothing but the standard library, so the launcher starts in ~30 ms.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import resource
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class ProcessLimits:
    """Limits of one process; the default is none."""

    #: CPUs it may run on (empty: any).
    cpus: tuple[int, ...] = ()
    #: RLIMIT_DATA in bytes (None: unlimited).
    data_bytes: int | None = None
    #: GPU indices it sees (None: the environment is left as it is).
    gpus: tuple[int, ...] | None = None

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with the GPU visibility of these limits."""
        out = dict(base)
        if self.gpus is not None:
            out["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            out["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        return out

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run through the launcher when there is a limit to apply; a command
        that cannot be found is an OSError here, as starting it directly would be."""
        if not self.cpus and self.data_bytes is None:
            return list(argv)
        if shutil.which(argv[0]) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
        launcher = [sys.executable, "-m", "aimp_deploy_control.limits"]
        if self.cpus:
            launcher += ["--cpus", ",".join(map(str, self.cpus))]
        if self.data_bytes is not None:
            launcher += ["--data-bytes", str(self.data_bytes)]
        return [*launcher, "--", *argv]


def pick_cpus(
    available: Sequence[int], cores: float | None, load: Mapping[int, int]
) -> tuple[int, ...]:
    """ceil(``cores``) of the ``available`` CPUs, those fewest other pods use first
    (then the lowest numbers); () when no limit is asked for or it covers them all."""
    if cores is None or not available:
        return ()
    count = max(1, math.ceil(cores))
    if count >= len(available):
        return ()
    chosen = sorted(available, key=lambda cpu: (load.get(cpu, 0), cpu))[:count]
    return tuple(sorted(chosen))


def plan(
    cpu: float | None,
    memory_mib: int | None,
    *,
    available_cpus: Sequence[int],
    cpu_load: Mapping[int, int],
    gpus: tuple[int, ...] | None = None,
) -> ProcessLimits:
    """The limits for a server asking for ``cpu`` cores and ``memory_mib``, on a machine
    whose CPUs ``available_cpus`` already run ``cpu_load`` pods each."""
    return ProcessLimits(
        cpus=pick_cpus(available_cpus, cpu, cpu_load),
        data_bytes=memory_mib * MIB if memory_mib is not None else None,
        gpus=gpus,
    )


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may use (its own affinity); () where the OS cannot say."""
    getter = getattr(os, "sched_getaffinity", None)
    return tuple(sorted(getter(0))) if getter is not None else ()


def apply(limits: ProcessLimits) -> list[str]:
    """Put ``limits`` on this process; what the OS did not allow, in words."""
    skipped = []
    if limits.cpus:
        setter = getattr(os, "sched_setaffinity", None)
        if setter is None:
            skipped.append("CPU affinity (this OS has no sched_setaffinity)")
        else:
            setter(0, limits.cpus)
    if limits.data_bytes is not None:
        limit = getattr(resource, "RLIMIT_DATA", None)
        if limit is None:
            skipped.append("memory (this OS has no RLIMIT_DATA)")
        else:
            _soft, hard = resource.getrlimit(limit)
            cap = limits.data_bytes
            if hard != resource.RLIM_INFINITY:
                cap = min(hard, cap)  # an unprivileged process cannot raise its hard limit
            resource.setrlimit(limit, (cap, cap))
    return skipped


def main(argv: Sequence[str] | None = None) -> None:
    """The launcher: apply the limits given, then become the command after ``--``."""
    parser = argparse.ArgumentParser(prog="aimp_deploy_control.limits")
    parser.add_argument("--cpus", default="", help="comma-separated CPU numbers")
    parser.add_argument("--data-bytes", type=int, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("give the command to run after --")
    cpus = tuple(int(c) for c in args.cpus.split(",") if c)
    for what in apply(ProcessLimits(cpus=cpus, data_bytes=args.data_bytes)):
        print(f"aimp limits: skipped {what}", file=sys.stderr, flush=True)
    os.execvp(command[0], command)  # noqa: S606 - argv as given, never through a shell


if __name__ == "__main__":
    main()
