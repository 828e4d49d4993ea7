"""Request and response bodies of the deployments API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.rollout import RolloutState


class DeploymentCreate(BaseModel):
    name: str = Field(max_length=253, description="Service name: a DNS label, e.g. 'iris'.")
    model_file: str = Field(
        max_length=4096, description="Absolute path of the model file on this host."
    )
    # Plain strings checked by runtimes.validate_runtime, so a wrong value is a 400 that
    # says which values are allowed together (onnx only on triton).
    runtime: str = Field(
        default="triton",
        max_length=64,
        description="Inference server: 'triton' (default), 'cpp' or 'java'.",
        json_schema_extra={"enum": ["triton", "cpp", "java"]},
    )
    framework: str = Field(
        default="sklearn",
        max_length=64,
        description="Model format: 'sklearn' (joblib) or 'onnx' (runtime 'triton' only).",
        json_schema_extra={"enum": ["sklearn", "onnx"]},
    )
    replicas: int = Field(
        default=1,
        description="Pods to start with (1 to AIMP_MAX_REPLICAS); afterwards use PUT .../scale.",
    )


class ScaleUpdate(BaseModel):
    replicas: int = Field(description="Pods to run (0 to AIMP_MAX_REPLICAS; 0 keeps the spec).")


class ScalePublic(BaseModel):
    replicas: int = Field(description="Pods asked for.")
    ready: int = Field(description="Pods RUNNING now (their sidecar answers ready).")


class RolloutPublic(BaseModel):
    state: RolloutState
    replaced: int = Field(description="Replicas replaced and UP so far.")
    total: int
    started_at: datetime
    finished_at: datetime | None
    current: str | None = Field(description="The step under way.")
    error: str | None


class RuntimePublic(BaseModel):
    name: str
    available: bool
    frameworks: list[str]
    command: list[str] | None
    detail: str | None = Field(description="Why it is unavailable and how to fix that.")


class RuntimeList(BaseModel):
    runtimes: list[RuntimePublic]


class ProcessPublic(BaseModel):
    role: str
    pid: int | None
    alive: bool
    restarts: int
    log_file: str


class PodPublic(BaseModel):
    pod_id: str
    deployment: str
    replica: int
    runtime: str
    state: PodState
    url: str = Field(description="The pod's sidecar, where calls go.")
    upstream_url: str = Field(description="The inference server behind the sidecar.")
    restarts: int
    last_error: str | None
    processes: list[ProcessPublic]


class DeploymentPublic(BaseModel):
    name: str
    model_file: str
    runtime: str
    framework: str
    replicas: int
    created_at: datetime
    updated_at: datetime
    pods: list[PodPublic]
    rollout: RolloutPublic | None = Field(
        default=None, description="The latest rolling restart since deploy-control started."
    )


class DeploymentList(BaseModel):
    deployments: list[DeploymentPublic]


class PodList(BaseModel):
    pods: list[PodPublic]
