"""What machine a benchmark ran on, for the figures it prints (shared by bench/*.py)."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu() -> str:
    """The CPU model and how many CPUs this process sees, e.g. ``AMD EPYC x2``."""
    return f"{cpu_model()} x{os.cpu_count()}"


def describe() -> str:
    """CPU, CPUs visible, load average, OS and Python: one line for a benchmark's header."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs visible, load average {load}; "
        f"{platform.platform()}; Python {platform.python_version()}"
    )
