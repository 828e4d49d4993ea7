"""Pure builders of the Kubernetes objects and the pod bookkeeping (k8s_manifests, k8s_pods)."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_deploy_control import k8s_manifests as m
from aimp_deploy_control.backend import PodSpec, Resources, Toleration
from aimp_deploy_control.k8s_pods import ObservedPod, assign_slots, observe
from aimp_deploy_control.lifecycle import PodState

VERSIONS = (kubernetes_validate.latest_version(), "1.33.0")
CFG = m.PodTemplateConfig(
    namespace="aimp",
    server_images={"triton": "aimp/triton-pod:0.1.0"},
    sidecar_image="aimp/sidecar:0.1.0",
    registry_url="http://registry:8761/eureka",
    jwks_url="http://gateway:8080/.well-known/jwks.json",
    token_issuer="https://aimp.example.com",
    models_claim="models",
)
DNS_1035 = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")


def valid(doc: dict[str, Any]) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


@given(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[0-9]{1,6}", fullmatch=True),
)
def test_object_names_are_dns_1035_labels(service: str, revision: str) -> None:
    """Every deployment name and revision gives a name a Service accepts."""
    assert DNS_1035.fullmatch(m.object_name(service, revision))


def test_object_names_keep_short_names_readable_and_long_ones_distinct() -> None:
    """'iris' revision 1 is 'iris-r1'; two long names differing at the end stay distinct."""
    assert m.object_name("iris", "1") == "iris-r1"
    a, b = "x" * 62 + "a", "x" * 62 + "b"
    assert m.object_name(a, "1") != m.object_name(b, "1")


@pytest.mark.parametrize(
    "resources",
    [
        Resources(),
        Resources(cpu=0.25, memory_mib=512, gpu_count=2),
        Resources(
            gpu_mem_mib=1025,
            node_selector=(("accelerator", "a10"), ("zone", "b")),
            tolerations=(
                Toleration(key="gpu", value="yes", effect="NoSchedule"),
                Toleration(operator="Exists"),
                Toleration(
                    key="spot", operator="Exists", effect="NoExecute", toleration_seconds=60
                ),
            ),
        ),
    ],
)
def test_deployment_and_service_validate_strictly(resources: Resources) -> None:
    """The Deployment, Service and Scale bodies are valid on the newest Kubernetes and 1.33."""
    spec = PodSpec("fraud-v2", 0, "/var/lib/aimp/models/f.onnx", "onnx", resources=resources)
    valid(m.deployment(spec, 3, CFG))
    valid(m.service(spec, CFG))
    valid(m.scale("fraud-v2-r1", "aimp", 0))


def test_gpu_resources_use_the_device_plugins_names_and_units() -> None:
    """Whole GPUs are nvidia.com/gpu; a share is aliyun.com/gpu-mem in GiB, rounded up."""
    whole = m.server_resources(Resources(gpu_count=2), "GiB")
    assert whole == {"limits": {"nvidia.com/gpu": "2"}}
    share = m.server_resources(Resources(gpu_mem_mib=1025), "GiB")
    assert share == {"limits": {"aliyun.com/gpu-mem": "2"}}
    assert m.server_resources(Resources(gpu_mem_mib=1025), "MiB")["limits"] == {
        "aliyun.com/gpu-mem": "1025"
    }


def test_a_changed_spec_changes_the_hash_and_the_same_spec_keeps_it() -> None:
    """The spec-hash annotation follows the pod template, not the replica count."""
    spec = PodSpec("iris", 0, "/var/lib/aimp/models/a.joblib", "sklearn")
    h = m.deployment(spec, 1, CFG)["metadata"]["annotations"][m.HASH_ANNOTATION]
    assert m.deployment(spec, 5, CFG)["metadata"]["annotations"][m.HASH_ANNOTATION] == h
    other = PodSpec("iris", 0, "/var/lib/aimp/models/b.joblib", "sklearn")
    assert m.deployment(other, 1, CFG)["metadata"]["annotations"][m.HASH_ANNOTATION] != h


def test_a_model_outside_the_models_volume_is_refused_with_the_fix() -> None:
    """With a models claim, a model path outside its mount is an error naming both."""
    with pytest.raises(m.ManifestError, match=r"not on the models volume.*/var/lib/aimp/models"):
        m.deployment(PodSpec("iris", 0, "/home/me/../../etc/model.joblib", "sklearn"), 1, CFG)


def test_a_runtime_without_an_image_is_refused_naming_the_setting() -> None:
    """A runtime with no pod image says which setting provides one."""
    spec = PodSpec("iris", 0, "/var/lib/aimp/models/m.json", "sklearn", runtime="cpp")
    with pytest.raises(m.ManifestError, match="AIMP_DEPLOY_CONTROL_K8S_CPP_IMAGE"):
        m.deployment(spec, 1, CFG)


# -- k8s_pods ---------------------------------------------------------------------------------


def pod(name: str, created: str, *, terminating: bool = False) -> ObservedPod:
    state = PodState.STOPPING if terminating else PodState.RUNNING
    return ObservedPod(name, created, "n1", "10.0.0.1", state, 0, None, terminating)


pods_st = st.lists(
    st.builds(
        pod,
        st.text("abcdef", min_size=1, max_size=3),
        st.sampled_from(["t1", "t2", "t3"]),
        terminating=st.booleans(),
    ),
    max_size=8,
    unique_by=lambda p: p.name,
)


@given(
    st.dictionaries(st.integers(0, 8), st.text("abcdef", min_size=1, max_size=3), max_size=6),
    pods_st,
    st.integers(0, 8),
)
def test_slots_hold_distinct_live_pods_and_keep_their_places(
    previous: dict[int, str], pods: list[ObservedPod], desired: int
) -> None:
    """Slots are below desired, hold distinct live pods, keep wanted ones, and fill up."""
    slots = assign_slots(previous, pods, desired)
    live = {p.name for p in pods if not p.terminating}
    assert all(0 <= s < desired for s in slots)
    assert len(set(slots.values())) == len(slots)
    assert set(slots.values()) <= live
    for slot, name in previous.items():
        if slot < desired and name in live and list(previous.values()).count(name) == 1:
            assert slots.get(slot) == name
    assert len(slots) == min(desired, len(live))


def test_observe_reads_the_pod_state_from_status() -> None:
    """Ready is RUNNING, not yet ready STARTING, a deletion timestamp STOPPING."""
    base = {
        "metadata": {"name": "p", "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running", "podIP": "10.1.2.3", "conditions": []},
    }
    assert observe(base).state == PodState.STARTING
    base["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    seen = observe(base)
    assert (seen.state, seen.ip, seen.node) == (PodState.RUNNING, "10.1.2.3", "n1")
    base["metadata"]["deletionTimestamp"] = "2025-01-01T00:01:00Z"
    assert observe(base).state == PodState.STOPPING
