"""Settings of the Kubernetes backend, read from ``AIMP_DEPLOY_CONTROL_*`` variables.

Only read when ``AIMP_DEPLOY_CONTROL_BACKEND=kubernetes``. The API server is found in
this order: an explicit ``AIMP_DEPLOY_CONTROL_K8S_API_URL`` (+ token), the in-cluster
service account (deploy-control running as a pod), then a kubeconfig file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KubernetesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIMP_DEPLOY_CONTROL_", extra="ignore")

    # -- where -----------------------------------------------------------------------------
    #: The namespace pods run in; k8s/deploy-control.yaml sets it to deploy-control's own
    #: (the Role in k8s/rbac.yaml grants rights there only).
    namespace: str = Field(default="aimp", min_length=1, max_length=63)

    # -- reaching the API server -----------------------------------------------------------
    #: e.g. https://10.0.0.1:6443; unset: in-cluster config when running as a pod, else the
    #: kubeconfig below.
    k8s_api_url: str | None = None
    #: Bearer token for ``k8s_api_url`` (a service-account token); never logged.
    k8s_token: SecretStr | None = None
    #: CA bundle that signed the API server's certificate (with ``k8s_api_url``).
    k8s_ca_file: str | None = None
    #: Switch off only for a test API server with a self-signed certificate.
    k8s_verify_tls: bool = True
    #: kubeconfig file; unset: $KUBECONFIG or ~/.kube/config, as kubectl does.
    k8s_kubeconfig: str | None = None
    #: kubeconfig context; unset: its current context.
    k8s_context: str | None = None
    #: Every API call gives up after this long; an API server answers in milliseconds, 10 s
    #: covers a busy control plane without hanging a deploy behind a dead one.
    k8s_timeout_s: float = Field(default=10.0, gt=0)
    #: How often pods are listed to refresh their states; 2 s keeps a rollout's wait short
    #: at one light LIST call per tick.
    k8s_poll_interval_s: float = Field(default=2.0, gt=0)
    #: A followed log (live tail) ends after this long without a new line, so a forgotten
    #: tail does not hold a connection and a thread forever; the caller may follow again.
    k8s_log_idle_timeout_s: float = Field(default=300.0, gt=0)

    # -- what pods run ---------------------------------------------------------------------
    #: Images built from this repository (inference/python and services/registry-sidecar);
    #: the tags follow k8s/kustomization.yaml's. A runtime without an image cannot run.
    k8s_triton_image: str = "aimp/triton-pod:0.1.0"
    #: No C++ or Java pod image is built yet: unset means those runtimes are refused.
    k8s_cpp_image: str | None = None
    k8s_java_image: str | None = None
    k8s_sidecar_image: str = "aimp/sidecar:0.1.0"
    #: IfNotPresent: tags are versions, so a node reuses what it pulled once.
    k8s_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    #: A PersistentVolumeClaim holding the model files, mounted read-only in every pod at
    #: ``k8s_models_mount_path`` (deploy-control mounts it at the same path, so a model's
    #: path is the same in both). Unset: the model path must exist inside the image.
    k8s_models_claim: str | None = None
    k8s_models_mount_path: str = "/var/lib/aimp/models"
    #: The unit the aliyun gpushare device plugin counts ``aliyun.com/gpu-mem`` in: GiB
    #: unless the plugin runs with ``--memory-unit=MiB``.
    k8s_gpu_mem_unit: Literal["GiB", "MiB"] = "GiB"
    #: The sidecar's port inside each pod (its image's default).
    k8s_sidecar_port: int = Field(default=8100, ge=1, le=65535)
    #: The inference server keeps serving this long after a pod is told to stop, while the
    #: sidecar drains (AIMP_SIDECAR_DRAIN_TIMEOUT_S is 20 s by default).
    k8s_drain_s: int = Field(default=20, ge=0)
