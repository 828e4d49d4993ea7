"""Request and response bodies of the deployments API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from aimp_deploy_control.lifecycle import PodState


class DeploymentCreate(BaseModel):
    name: str = Field(max_length=253, description="Service name: a DNS label, e.g. 'iris'.")
    model_file: str = Field(
        max_length=4096, description="Absolute path of the model file on this host."
    )
    framework: Literal["sklearn"] = "sklearn"
    replicas: int = Field(default=1, description="Pods to run (1 to AIMP_MAX_REPLICAS).")


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
    state: PodState
    url: str = Field(description="The pod's sidecar, where calls go.")
    upstream_url: str = Field(description="The inference server behind the sidecar.")
    restarts: int
    last_error: str | None
    processes: list[ProcessPublic]


class DeploymentPublic(BaseModel):
    name: str
    model_file: str
    framework: str
    replicas: int
    created_at: datetime
    updated_at: datetime
    pods: list[PodPublic]


class DeploymentList(BaseModel):
    deployments: list[DeploymentPublic]


class PodList(BaseModel):
    pods: list[PodPublic]
