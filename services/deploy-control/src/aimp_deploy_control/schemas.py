"""Request and response bodies of the deployments API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from aimp_deploy_control.coldstart import ColdStart
from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.model_schema import ModelSchema
from aimp_deploy_control.resources import ResourcesSpec
from aimp_deploy_control.revision_spec import ServingFields, ServingPublic
from aimp_deploy_control.revisions import RevisionState
from aimp_deploy_control.rollout import RolloutState


class RevisionCreate(ServingFields):
    """``POST /v1/deployments/{name}/revisions``: a new revision of an existing service."""

    model_file: str | None = Field(
        default=None,
        max_length=4096,
        description="Absolute path of the model file on this host (or give 'model').",
    )
    model: str | None = Field(
        default=None,
        max_length=253,
        description="A registered model (POST /v1/models/{model}/versions), instead of model_file.",
    )
    version: int | Literal["latest"] = Field(
        default="latest", description="The model's version to serve, with 'model'."
    )
    # Plain strings checked by runtimes.validate_runtime, so a wrong value is a 400 that
    # says which values are allowed together (onnx only on triton).
    runtime: str = Field(
        default="triton",
        max_length=64,
        description="Inference server: 'triton' (default), 'cpp' or 'java'.",
        json_schema_extra={"enum": ["triton", "cpp", "java"]},
    )
    framework: str | None = Field(
        default=None,
        max_length=64,
        description="Model format of model_file: 'sklearn' (joblib, the default) or 'onnx' "
        "(runtime 'triton' only); a registered version knows its own.",
        json_schema_extra={"enum": ["sklearn", "onnx", "python"]},
    )
    resources: ResourcesSpec | None = Field(
        default=None, description="What each replica needs (CPU, memory, GPUs) and where it runs."
    )

    @model_validator(mode="after")
    def _one_source(self) -> RevisionCreate:
        if (self.model_file is None) == (self.model is None):
            raise ValueError(
                "give either 'model' (a registered model, with 'version') or 'model_file' "
                "(a path on the deploy-control host), not both and not neither"
            )
        return self


class DeploymentCreate(RevisionCreate):
    """``POST /v1/deployments``: a new service; its first revision is r1 with all traffic."""

    name: str = Field(max_length=253, description="Service name: a DNS label, e.g. 'iris'.")


class ScaleUpdate(BaseModel):
    replicas: int = Field(
        description="Pods to run (within the revision's min_scale and max_scale; 0 keeps the spec)."
    )


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
    cold_start: ColdStart | None = Field(
        default=None, description="Its latest start's phases in ms (local pods only)."
    )
    revision: str = Field(default="1", description="The revision it runs, e.g. 'r2'.")


class WarmupPublic(BaseModel):
    pods_total: int
    pods_warmed: int = Field(description="Pods that answered every sample request.")
    requests_ok: int
    requests_failed: int
    last_error: str | None


class RevisionPublic(ServingPublic):
    name: str = Field(description="'r1', 'r2', ... (the gateway's x-aimp-revision value).")
    state: RevisionState
    traffic_percent: int = Field(description="Its share of the service's calls.")
    replicas: int = Field(description="Pods it runs while not scaled down.")
    ready: int = Field(description="Its pods RUNNING now.")
    model_file: str | None
    model: str | None
    model_version: int | None
    runtime: str
    framework: str
    resources: ResourcesSpec | None
    created_at: datetime
    updated_at: datetime
    warmup: WarmupPublic | None = Field(
        default=None, description="Its latest warm-up since deploy-control started."
    )
    error: str | None = Field(default=None, description="Why it failed, and what to do.")


class DeploymentPublic(BaseModel):
    name: str
    model_file: str | None = Field(description="The file given at deploy time, if one was.")
    model: str | None = Field(default=None, description="The registered model it serves.")
    model_version: int | None = Field(default=None, description="That model's version.")
    runtime: str
    framework: str
    replicas: int
    created_at: datetime
    updated_at: datetime
    pods: list[PodPublic]
    rollout: RolloutPublic | None = Field(
        default=None, description="The latest rolling restart since deploy-control started."
    )
    revisions: list[RevisionPublic] = Field(
        default_factory=list, description="Every revision, oldest first, with its traffic."
    )


class ReleasePublic(BaseModel):
    """The answer to a traffic change, promote or rollback."""

    deployment: DeploymentPublic
    traffic: dict[str, int] = Field(description="Percent of calls by revision now.")
    config_version: int | None = Field(description="The gateway config version written.")
    applied: str | None = Field(
        default=None,
        description="How the change was known to be in force before old pods were stopped.",
    )


class DeploymentList(BaseModel):
    deployments: list[DeploymentPublic]


class PodList(BaseModel):
    pods: list[PodPublic]


# -- the model registry ---------------------------------------------------------------


class ModelVersionMeta(BaseModel):
    """The ``metadata`` part of an upload (JSON)."""

    framework: str = Field(
        max_length=64,
        description="'sklearn' (joblib), 'onnx', 'python' (a handler) or 'torchscript'.",
        json_schema_extra={"enum": ["sklearn", "onnx", "python", "torchscript"]},
    )
    schema_: ModelSchema | None = Field(
        default=None,
        alias="schema",
        description="Inputs and outputs; checked against the file. Omit to infer it.",
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="The file's SHA-256 (hex); the upload is refused if it differs.",
    )


class ModelVersionPublic(BaseModel):
    model: str
    version: int
    framework: str
    sha256: str
    size_bytes: int
    filename: str = Field(description="The uploaded file's name (for people; not a path).")
    schema_: ModelSchema = Field(serialization_alias="schema")
    schema_source: Literal["declared", "inferred"] = Field(
        description="'declared' (given and checked against the file) or 'inferred' (read "
        "from the file)."
    )
    created_at: datetime
    deployments: list[str] = Field(description="Deployments serving this version.")


class ModelPublic(BaseModel):
    name: str
    created_at: datetime
    latest_version: int | None
    versions: list[ModelVersionPublic]


class ModelSummary(BaseModel):
    name: str
    latest_version: int | None
    versions: int


class ModelList(BaseModel):
    models: list[ModelSummary]
