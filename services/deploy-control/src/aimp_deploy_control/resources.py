"""The ``resources`` block of a deployment request: what each replica needs and where it may run.

Optional; nothing set means no request and no limit. ``gpu_count`` (whole GPUs,
``nvidia.com/gpu``) and ``gpu_mem_mib`` (a share of one GPU's memory,
``aliyun.com/gpu-mem``) exclude each other.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aimp_deploy_control.backend import Resources, Toleration

#: Label keys and values as Kubernetes allows them (prefix/name, at most 63 per part).
_LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"


class TolerationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str | None = Field(default=None, max_length=316, pattern=_LABEL_KEY)
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = Field(default=None, max_length=63, pattern=_LABEL_VALUE)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> TolerationSpec:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("a toleration with operator 'Exists' takes no value; drop 'value'")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key must use operator 'Exists'")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("toleration_seconds applies only to effect 'NoExecute'")
        return self


class ResourcesSpec(BaseModel):
    """What each replica needs; the same block is returned in the deployment's view."""

    model_config = ConfigDict(extra="forbid")

    cpu: float | None = Field(
        default=None, gt=0, le=512, description="CPU cores per replica (0.5 = half a core)."
    )
    memory_mib: int | None = Field(
        default=None, gt=0, le=4 * 1024 * 1024, description="Memory per replica in MiB."
    )
    gpu_count: int = Field(
        default=0, ge=0, le=16, description="Whole GPUs per replica (nvidia.com/gpu)."
    )
    gpu_mem_mib: int | None = Field(
        default=None,
        gt=0,
        le=1024 * 1024,
        description="A share of one GPU's memory in MiB (aliyun.com/gpu-mem; on Kubernetes "
        "rounded up to whole GiB, the gpushare device plugin's unit).",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Node labels a replica must run on (Kubernetes nodeSelector).",
    )
    tolerations: list[TolerationSpec] = Field(
        default_factory=list, max_length=32, description="Taints a replica tolerates."
    )

    @model_validator(mode="after")
    def _one_kind_of_gpu(self) -> ResourcesSpec:
        if self.gpu_count and self.gpu_mem_mib is not None:
            raise ValueError(
                "ask for either gpu_count (whole GPUs) or gpu_mem_mib (a share of one GPU's "
                "memory), not both"
            )
        for key, value in self.node_selector.items():
            if not re.fullmatch(_LABEL_KEY, key) or not re.fullmatch(_LABEL_VALUE, value):
                raise ValueError(
                    f"node_selector {key!r}: {value!r} is not a Kubernetes label (keys like "
                    "'gpu' or 'example.com/gpu', values of at most 63 letters, digits, '-_.')"
                )
        return self

    def to_resources(self) -> Resources:
        return Resources(
            cpu=self.cpu,
            memory_mib=self.memory_mib,
            gpu_count=self.gpu_count,
            gpu_mem_mib=self.gpu_mem_mib,
            node_selector=tuple(sorted(self.node_selector.items())),
            tolerations=tuple(Toleration(**t.model_dump()) for t in self.tolerations),
        )

    @classmethod
    def of(cls, resources: Resources) -> ResourcesSpec:
        return cls(
            cpu=resources.cpu,
            memory_mib=resources.memory_mib,
            gpu_count=resources.gpu_count,
            gpu_mem_mib=resources.gpu_mem_mib,
            node_selector=dict(resources.node_selector),
            tolerations=[TolerationSpec(**vars(t)) for t in resources.tolerations],
        )
