"""What the Kubernetes backend knows of each revision's Deployment, read from the API
server's objects (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aimp_deploy_control import k8s_manifests as m
from aimp_deploy_control.backend import pod_id
from aimp_deploy_control.k8s_pods import ObservedPod, assign_slots, observe


@dataclass
class KnownRevision:
    """One revision's Kubernetes Deployment and its pods, numbered into replica slots."""

    #: The Kubernetes object's name (k8s_manifests.object_name).
    name: str
    #: The deploy-control deployment (service) and revision it runs.
    service: str
    revision: str
    runtime: str
    replicas: int
    spec_hash: str | None
    pods: list[ObservedPod] = field(default_factory=list)
    slots: dict[int, str] = field(default_factory=dict)

    def reassign(self) -> None:
        self.slots = assign_slots(self.slots, self.pods, self.replicas)

    def replica_of(self, pod: str) -> int | None:
        """The replica number ``pod`` (a pod id) names in this revision, if it is one of it."""
        prefix = pod_id(self.service, self.revision, 0).removesuffix("0")
        rest = pod.removeprefix(prefix)
        return int(rest) if pod.startswith(prefix) and rest.isdigit() else None


def order(known: KnownRevision) -> tuple[str, int, str]:
    """Service, then revision number (r2 before r10)."""
    number = known.revision.removeprefix("r")
    return known.service, int(number) if number.isdigit() else 0, known.name


def known_revision(item: Mapping[str, Any]) -> KnownRevision | None:
    """A managed Deployment as the backend tracks it (None without the service label)."""
    meta = item.get("metadata") or {}
    found_labels = meta.get("labels") or {}
    service = found_labels.get(m.SERVICE_LABEL)
    if not service:
        return None
    return KnownRevision(
        name=meta.get("name", ""),
        service=service,
        revision=found_labels.get(m.REVISION_LABEL, "1"),
        runtime=found_labels.get(m.RUNTIME_LABEL, "triton"),
        replicas=int((item.get("spec") or {}).get("replicas") or 0),
        spec_hash=(meta.get("annotations") or {}).get(m.HASH_ANNOTATION),
    )


def pods_by_revision(
    items: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], list[ObservedPod]]:
    """Managed pods grouped by (service, revision) from their labels."""
    out: defaultdict[tuple[str, str], list[ObservedPod]] = defaultdict(list)
    for item in items:
        found_labels = (item.get("metadata") or {}).get("labels") or {}
        service = found_labels.get(m.SERVICE_LABEL)
        if service:
            out[(service, found_labels.get(m.REVISION_LABEL, "1"))].append(observe(item))
    return dict(out)
