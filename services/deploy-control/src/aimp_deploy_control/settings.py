"""deploy-control settings, read from ``AIMP_*`` environment variables."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field

from aimp_core.settings import DEFAULT_PORTS, CoreSettings


def _beside_python(command: str) -> list[str]:
    """An executable installed next to the running interpreter (the workspace venv)."""
    return [str(Path(sys.executable).parent / command)]


class DeployControlSettings(CoreSettings):
    # -- this service ---------------------------------------------------------------------
    deploy_control_port: int = DEFAULT_PORTS["deploy_control"]

    # -- local pods -----------------------------------------------------------------------
    #: Command that serves one model file through Triton (argv; flags are appended).
    pod_command: list[str] = Field(default_factory=lambda: _beside_python("aimp-triton-pod"))
    #: Command of the sidecar that registers a pod and proxies its calls.
    sidecar_command: list[str] = Field(default_factory=lambda: _beside_python("aimp-sidecar"))
    #: Replicas one deployment may ask for; a laptop runs out of cores well before more.
    max_replicas: int = Field(default=8, ge=1)

    # -- supervision ----------------------------------------------------------------------
    #: First delay before restarting a crashed process; doubles on each further crash.
    restart_backoff_initial_s: float = Field(default=1.0, gt=0)
    #: Ceiling of that delay, so a fixed fault is picked up within half a minute.
    restart_backoff_max_s: float = Field(default=30.0, gt=0)
    #: A process that stayed up this long is healthy again: its backoff starts over.
    restart_reset_after_s: float = Field(default=60.0, gt=0)
    #: How often processes are checked; a crash is noticed within this time.
    supervise_interval_s: float = Field(default=0.5, gt=0)

    # -- stopping -------------------------------------------------------------------------
    #: Wait for a sidecar's drain (20 s by default, plus 1 s grace) before SIGKILL.
    sidecar_stop_timeout_s: float = Field(default=25.0, gt=0)
    #: Wait for Triton (its own exit timeout is 5 s) before SIGKILL.
    pod_stop_timeout_s: float = Field(default=15.0, gt=0)

    @property
    def pod_log_dir(self) -> Path:
        return self.home / "logs" / "pods"

    @property
    def pod_pid_dir(self) -> Path:
        return self.home / "run" / "pods"
