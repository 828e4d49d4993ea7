"""deploy-control settings, read from ``AIMP_*`` environment variables."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from aimp_core.settings import DEFAULT_PORTS, CoreSettings


def _beside_python(command: str) -> list[str]:
    """An executable installed next to the running interpreter (the workspace venv)."""
    return [str(Path(sys.executable).parent / command)]


class DeployControlSettings(CoreSettings):
    # -- this service ---------------------------------------------------------------------
    deploy_control_port: int = DEFAULT_PORTS["deploy_control"]
    #: Where pods run: local processes (a laptop, tests) or a Kubernetes cluster
    #: (production; its settings are in k8s_settings.py).
    deploy_control_backend: Literal["local", "kubernetes"] = "local"

    # -- local pods -----------------------------------------------------------------------
    #: Command that serves one model file through Triton (argv; flags are appended).
    pod_command: list[str] = Field(default_factory=lambda: _beside_python("aimp-triton-pod"))
    #: Command of the sidecar that registers a pod and proxies its calls.
    sidecar_command: list[str] = Field(default_factory=lambda: _beside_python("aimp-sidecar"))
    #: Replicas one deployment may ask for; a laptop runs out of cores well before more.
    max_replicas: int = Field(default=8, ge=1)

    # -- native runtimes (language-agnostic pods) ------------------------------------------
    #: Absolute path of the C++ pod (inference/cpp/build/aimp-cpp-pod after `make native`);
    #: unset means runtime 'cpp' is unavailable here (its toolchain is optional).
    deploy_control_cpp_pod_command: str | None = None
    #: Absolute path of the Java pod launcher (inference/java/build/aimp-java-pod); unset means
    #: runtime 'java' is unavailable here (a JDK is optional).
    deploy_control_java_pod_command: str | None = None
    #: Converts a joblib model to the portable JSON the native pods load (MODEL OUT appended).
    #: It runs as a subprocess: deploy-control never imports the inference package.
    deploy_control_export_command: list[str] = Field(
        default_factory=lambda: [sys.executable, "-m", "aimp_inference.export"]
    )
    #: Importing scikit-learn alone takes ~1.5 s; a forest of a few hundred trees a few more.
    deploy_control_export_timeout_s: float = Field(default=60.0, gt=0)

    # -- rolling restarts ---------------------------------------------------------------
    #: Longest wait for one replacement to be UP before the rollout stops as failed
    #: (Triton takes ~3 s on a CPU, a large model's load can take a minute).
    deploy_control_rollout_ready_timeout_s: float = Field(default=120.0, gt=0)
    #: How often a replacement's readiness and registry status are read while waiting;
    #: 0.1 s keeps a rollout's idle time per replica small at ~2 local calls per tick.
    deploy_control_rollout_poll_interval_s: float = Field(default=0.1, gt=0)

    # -- supervision ----------------------------------------------------------------------
    #: First delay before restarting a crashed process; doubles on each further crash.
    restart_backoff_initial_s: float = Field(default=1.0, gt=0)
    #: Ceiling of that delay, so a fixed fault is picked up within half a minute.
    restart_backoff_max_s: float = Field(default=30.0, gt=0)
    #: A process that stayed up this long is healthy again: its backoff starts over.
    restart_reset_after_s: float = Field(default=60.0, gt=0)
    #: How often processes are checked; a crash is noticed within this time.
    supervise_interval_s: float = Field(default=0.5, gt=0)

    # -- model registry -------------------------------------------------------------------
    #: Where model files are stored: an fsspec URL (s3://bucket/prefix with s3fs installed,
    #: memory://name in tests) or a directory; unset means $AIMP_HOME/models.
    deploy_control_model_store_url: str | None = None
    #: Largest model file an upload may carry: 2 GiB covers ONNX's 2 GB protobuf limit, and
    #: a larger file is more likely a mistake than a model this laptop-sized stack serves.
    deploy_control_upload_max_bytes: int = Field(default=2 * 1024**3, gt=0)
    #: Reading an uploaded model's schema (a subprocess that imports scikit-learn or ONNX
    #: Runtime and loads the file): ~2 s for a small model, a large forest takes longer.
    deploy_control_inspect_timeout_s: float = Field(default=120.0, gt=0)

    # -- stopping -------------------------------------------------------------------------
    #: Wait for a sidecar's drain (20 s by default, plus 1 s grace) before SIGKILL.
    sidecar_stop_timeout_s: float = Field(default=25.0, gt=0)
    #: Wait for Triton (its own exit timeout is 5 s) before SIGKILL.
    pod_stop_timeout_s: float = Field(default=15.0, gt=0)

    @field_validator("deploy_control_cpp_pod_command", "deploy_control_java_pod_command")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not Path(value).is_absolute():
            raise ValueError(
                f"{value!r} must be an absolute path (deploy-control's working directory is "
                "not the repository), e.g. /path/to/inference/cpp/build/aimp-cpp-pod"
            )
        return value

    @property
    def deployments_dir(self) -> Path:
        """Per-deployment state that is not in SQL, e.g. the exported portable model."""
        return self.home / "deployments"

    @property
    def model_store_url(self) -> str:
        return self.deploy_control_model_store_url or str(self.home / "models")

    @property
    def model_cache_dir(self) -> Path:
        """Local copies of stored model files, by SHA-256, that pods load."""
        return self.home / "cache" / "models"

    @property
    def upload_tmp_dir(self) -> Path:
        """Uploads in progress (same disk as the cache and the default store)."""
        return self.home / "tmp" / "uploads"

    @property
    def pod_log_dir(self) -> Path:
        return self.home / "logs" / "pods"

    @property
    def pod_pid_dir(self) -> Path:
        return self.home / "run" / "pods"
