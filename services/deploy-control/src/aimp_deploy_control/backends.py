"""Which orchestrator runs the pods (``AIMP_DEPLOY_CONTROL_BACKEND``), and its inventory."""

from __future__ import annotations

from aimp_deploy_control.backend import PodBackend
from aimp_deploy_control.inventory import Inventory
from aimp_deploy_control.k8s_backend import KubernetesBackend
from aimp_deploy_control.k8s_inventory import KubernetesNodes
from aimp_deploy_control.k8s_settings import KubernetesSettings
from aimp_deploy_control.local_backend import LocalProcessBackend
from aimp_deploy_control.settings import DeployControlSettings


def make_backend(settings: DeployControlSettings) -> PodBackend:
    """Local processes (the default) or Kubernetes (settings in k8s_settings.py)."""
    if settings.deploy_control_backend == "kubernetes":
        return KubernetesBackend(settings, KubernetesSettings())
    return LocalProcessBackend(settings)


def make_inventory(backend: PodBackend) -> Inventory:
    """This host for local pods; the cluster's nodes for the Kubernetes backend."""
    if isinstance(backend, KubernetesBackend):
        nodes = KubernetesNodes(backend.api, backend.namespace, backend.cfg.gpu_mem_unit)
        return Inventory(backend, remote_nodes=nodes)
    return Inventory(backend)
