"""The Kubernetes objects of one deployment revision, built as plain dicts (pure).

Each revision is one Deployment and one Service of the same name. A pod has two
containers: the inference server (listening on loopback only) and the sidecar in front
of it, which registers the pod in the registry at the pod's IP, checks tokens, limits
concurrency and drains on SIGTERM. The server gets a ``preStop`` sleep so it keeps
answering while the sidecar drains.

GPUs: ``nvidia.com/gpu`` (NVIDIA's device plugin) for whole GPUs, ``aliyun.com/gpu-mem``
(Alibaba's gpushare device plugin) for a share of one GPU's memory, counted in GiB by
default (the plugin's ``--memory-unit``), so a share in MiB is rounded up to whole GiB.
Extended resources are set as limits only; Kubernetes copies them to requests.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aimp_deploy_control import runtimes
from aimp_deploy_control.backend import PodSpec, Resources, Toleration

MANAGED_BY = "aimp-deploy-control"
SERVICE_LABEL = "aimp.io/service"
REVISION_LABEL = "aimp.io/revision"
RUNTIME_LABEL = "aimp.io/runtime"
HASH_ANNOTATION = "aimp.io/spec-hash"
NVIDIA_GPU = "nvidia.com/gpu"
GPU_MEM = "aliyun.com/gpu-mem"
#: Where the server listens inside the pod (each pod has its own network namespace).
SERVER_PORTS = (8000, 8001, 8002)
#: The sidecar's own needs: ~40 MiB resident, a fraction of a core at full load.
SIDECAR_RESOURCES = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"cpu": "1", "memory": "256Mi"},
}
#: The images' user (aimp, uid 10001), as aimp's own Deployments run.
RUN_AS = 10001
_NAME_MAX = 63


class ManifestError(ValueError):
    """The spec cannot be expressed as a pod here (the message says what to change)."""


@dataclass(frozen=True)
class PodTemplateConfig:
    """Everything besides the PodSpec that shapes a pod (from the settings)."""

    namespace: str
    #: runtime name -> image; a runtime missing here cannot run on this cluster.
    server_images: Mapping[str, str]
    sidecar_image: str
    registry_url: str
    jwks_url: str
    token_issuer: str
    image_pull_policy: str = "IfNotPresent"
    models_claim: str | None = None
    models_mount_path: str = "/var/lib/aimp/models"
    gpu_mem_unit: Literal["GiB", "MiB"] = "GiB"
    sidecar_port: int = 8100
    drain_s: int = 20
    extra_labels: Mapping[str, str] = field(default_factory=dict)


def object_name(service: str, revision: str) -> str:
    """The Deployment's and Service's name: ``<service>-r<revision>``, a DNS-1035 label
    (Services need one: lowercase, starts with a letter, at most 63 characters); a longer
    or digit-led name is shortened and made unique with a hash of the full one."""
    number = revision.removeprefix("r")  # revisions are named r1, r2 (or "1" before them)
    base = re.sub(r"[^a-z0-9-]", "-", f"{service}-r{number}".lower())
    if re.fullmatch(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", base):
        return base
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    head = ("s-" + base)[: _NAME_MAX - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def selector(spec: PodSpec) -> dict[str, str]:
    """The labels that pick a revision's pods (a Deployment's selector cannot change)."""
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        SERVICE_LABEL: spec.deployment,
        REVISION_LABEL: spec.revision,
    }


def labels(spec: PodSpec, cfg: PodTemplateConfig) -> dict[str, str]:
    return {
        **cfg.extra_labels,
        "app.kubernetes.io/name": spec.deployment,
        "app.kubernetes.io/instance": object_name(spec.deployment, spec.revision),
        "app.kubernetes.io/component": "inference",
        "app.kubernetes.io/part-of": "aimp",
        RUNTIME_LABEL: spec.runtime,
        **selector(spec),
    }


def _quantity_cpu(cores: float) -> str:
    return f"{max(1, round(cores * 1000))}m"


def gpu_mem_quantity(mib: int, unit: Literal["GiB", "MiB"]) -> int:
    """``aliyun.com/gpu-mem`` units for a share of ``mib`` MiB (GiB rounded up)."""
    return mib if unit == "MiB" else math.ceil(mib / 1024)


def server_resources(res: Resources, gpu_mem_unit: Literal["GiB", "MiB"]) -> dict[str, Any]:
    """The server container's requests and limits (CPU and memory: request = limit)."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu is not None:
        requests["cpu"] = limits["cpu"] = _quantity_cpu(res.cpu)
    if res.memory_mib is not None:
        requests["memory"] = limits["memory"] = f"{res.memory_mib}Mi"
    if res.gpu_count:
        limits[NVIDIA_GPU] = str(res.gpu_count)
    if res.gpu_mem_mib is not None:
        limits[GPU_MEM] = str(gpu_mem_quantity(res.gpu_mem_mib, gpu_mem_unit))
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _toleration(t: Toleration) -> dict[str, Any]:
    out: dict[str, Any] = {"operator": t.operator}
    if t.key is not None:
        out["key"] = t.key
    if t.value is not None and t.operator == "Equal":
        out["value"] = t.value
    if t.effect is not None:
        out["effect"] = t.effect
    if t.toleration_seconds is not None:
        out["tolerationSeconds"] = t.toleration_seconds
    return out


def _model_path(spec: PodSpec, cfg: PodTemplateConfig) -> str:
    if cfg.models_claim is None:
        return spec.model_file
    root = cfg.models_mount_path.rstrip("/")
    path = posixpath.normpath(spec.model_file)
    if not path.startswith(root + "/"):
        raise ManifestError(
            f"model file {spec.model_file!r} is not on the models volume: pods mount claim "
            f"{cfg.models_claim!r} at {root}, so the file must lie under it (store models there, "
            "or change AIMP_DEPLOY_CONTROL_K8S_MODELS_MOUNT_PATH)"
        )
    return path


def _server_args(spec: PodSpec, cfg: PodTemplateConfig) -> list[str]:
    ports = list(SERVER_PORTS[: runtimes.ports_needed(spec.runtime)])
    return runtimes.server_argv(
        [],
        spec.runtime,
        model_file=_model_path(spec, cfg),
        name=spec.deployment,
        framework=spec.framework,
        ports=ports,
    )


def _sidecar_env(spec: PodSpec, cfg: PodTemplateConfig) -> list[dict[str, Any]]:
    plain = {
        "AIMP_HOST": "0.0.0.0",
        "AIMP_REGISTRY_URL": cfg.registry_url,
        "AIMP_JWKS_URL": cfg.jwks_url,
        "AIMP_TOKEN_ISSUER": cfg.token_issuer,
        "AIMP_SIDECAR_PORT": str(cfg.sidecar_port),
        "AIMP_SIDECAR_UPSTREAM_URL": f"http://127.0.0.1:{SERVER_PORTS[0]}",
        "AIMP_SIDECAR_SERVICE": spec.deployment,
        "AIMP_SIDECAR_MODEL": spec.deployment,
        "AIMP_SIDECAR_RUNTIME": spec.runtime,
        "AIMP_SIDECAR_REVISION": spec.revision,
        "AIMP_SIDECAR_DRAIN_TIMEOUT_S": str(cfg.drain_s),
        **spec.sidecar_admission_env(),
    }
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    # Other pods reach this one at its own IP: that is what the registry must list.
    env.append(
        {
            "name": "AIMP_SIDECAR_ADVERTISED_IP",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
        }
    )
    return env


_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def pod_template(spec: PodSpec, cfg: PodTemplateConfig) -> dict[str, Any]:
    """The pod template of a revision (the same for every replica)."""
    image = cfg.server_images.get(spec.runtime)
    if image is None:
        setting = f"AIMP_DEPLOY_CONTROL_K8S_{spec.runtime.upper()}_IMAGE"
        raise ManifestError(
            f"runtime {spec.runtime!r} has no pod image on Kubernetes: set {setting}"
        )
    res = spec.resources
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (the pod's own emptyDir)
        {"name": "aimp-home", "mountPath": "/var/lib/aimp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "aimp-home", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    server_mounts = list(mounts)
    if cfg.models_claim is not None:
        server_mounts.append(
            {"name": "models", "mountPath": cfg.models_mount_path, "readOnly": True}
        )
        volumes.append(
            {
                "name": "models",
                "persistentVolumeClaim": {"claimName": cfg.models_claim, "readOnly": True},
            }
        )
    server: dict[str, Any] = {
        "name": "server",
        "image": image,
        "imagePullPolicy": cfg.image_pull_policy,
        "args": _server_args(spec, cfg),
        "resources": server_resources(res, cfg.gpu_mem_unit),
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": server_mounts,
    }
    if spec.env:  # absent otherwise: a revision without env keeps its spec hash
        server["env"] = [{"name": k, "value": v} for k, v in spec.env]
    if cfg.drain_s > 0:
        server["lifecycle"] = {"preStop": {"sleep": {"seconds": cfg.drain_s}}}
    sidecar: dict[str, Any] = {
        "name": "sidecar",
        "image": cfg.sidecar_image,
        "imagePullPolicy": cfg.image_pull_policy,
        "ports": [{"name": "http", "containerPort": cfg.sidecar_port, "protocol": "TCP"}],
        "env": _sidecar_env(spec, cfg),
        "resources": SIDECAR_RESOURCES,
        # Ready = its server answers ready and it is not draining.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "securityContext": _CONTAINER_SECURITY,
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # The sidecar's drain plus a margin before the kubelet kills what is left.
        "terminationGracePeriodSeconds": cfg.drain_s + 10,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [server, sidecar],
        "volumes": volumes,
    }
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod_spec["tolerations"] = [_toleration(t) for t in res.tolerations]
    return {"metadata": {"labels": labels(spec, cfg)}, "spec": pod_spec}


def spec_hash(template: Mapping[str, Any]) -> str:
    """A short digest of a pod template: a Deployment whose annotation differs is replaced."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def deployment(spec: PodSpec, replicas: int, cfg: PodTemplateConfig) -> dict[str, Any]:
    """The apps/v1 Deployment of ``spec``'s revision, running ``replicas`` pods."""
    template = pod_template(spec, cfg)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": object_name(spec.deployment, spec.revision),
            "namespace": cfg.namespace,
            "labels": labels(spec, cfg),
            "annotations": {HASH_ANNOTATION: spec_hash(template)},
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(spec)},
            # A template change (new model, resources) replaces pods one by one.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": template,
        },
    }


def service(spec: PodSpec, cfg: PodTemplateConfig) -> dict[str, Any]:
    """The v1 Service in front of the revision's sidecars."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": object_name(spec.deployment, spec.revision),
            "namespace": cfg.namespace,
            "labels": labels(spec, cfg),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec),
            "ports": [
                {"name": "http", "port": cfg.sidecar_port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def scale(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    """The autoscaling/v1 Scale PUT to a Deployment's scale subresource."""
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas},
    }


#: Deleting a Deployment deletes its ReplicaSets and pods too (in the background; each
#: pod still gets its grace period, so its sidecar drains).
DELETE_OPTIONS: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "DeleteOptions",
    "propagationPolicy": "Background",
}
