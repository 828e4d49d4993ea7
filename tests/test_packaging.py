"""Checks on the production packaging: Dockerfiles, docker-compose.yml and k8s/.

No Docker engine and no Kubernetes cluster run here (DESIGN.md), so these checks are
static but real: the manifests are validated against the Kubernetes JSON schemas
(kubernetes-validate, strict), the compose file and Dockerfiles are parsed and
cross-checked against the workspace (console scripts, ports, build contexts, the
environment the local stack gives each service), and no secret value may be committed.
A check that needs a tool (kubectl's kustomize, docker compose) runs when the tool is
installed and is skipped otherwise.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aimp_cli.home import Home
from aimp_cli.stack import Ports, service_env
from aimp_core.settings import DEFAULT_PORTS
from aimp_registry_sidecar.settings import SidecarSettings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
COMPOSE = ROOT / "docker-compose.yml"

#: The newest Kubernetes the installed kubernetes-validate ships schemas for, and an
#: older minor still widely run, so the manifests work on both.
K8S_VERSIONS = (kubernetes_validate.latest_version(), "1.33.0")


@dataclass(frozen=True)
class Image:
    """One image built from this repository."""

    name: str  # compose service / k8s Deployment / image name
    directory: str  # the workspace member holding the Dockerfile
    port: int | None  # its AIMP_<NAME>_PORT default (None: a Triton pod, ports as arguments)


#: The aimp services of the local stack (aimp_cli.stack.services); compose and k8s run them.
SERVICES = [
    Image(name, directory, DEFAULT_PORTS[name.replace("-", "_")])
    for name, directory in [
        ("registry", "services/registry"),
        ("throttle", "services/throttle"),
        ("stats", "services/stats"),
        ("gateway", "services/gateway"),
        ("deploy-control", "services/deploy-control"),
    ]
]
#: Every image: the services plus what deploy-control runs as pods.
IMAGES = [
    *SERVICES,
    Image(
        "sidecar",
        "services/registry-sidecar",
        SidecarSettings.model_fields["sidecar_port"].default,
    ),
    Image("triton-pod", "inference/python", None),
]
INFRA_IMAGES = {"postgres": "postgres:16", "redis": "redis:7", "kafka": "apache/kafka:"}

#: Secret values may only come from these Secrets (created with kubectl, README.md).
K8S_SECRETS = {"aimp-db", "aimp-gateway"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|PRIVATE|CREDENTIAL|API_KEY", re.IGNORECASE)


# -- helpers ------------------------------------------------------------------------------


def _port_var(name: str) -> str:
    return f"AIMP_{name.upper().replace('-', '_')}_PORT"


@cache
def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@cache
def _k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    """Every (file name, document) of the manifests, empty documents skipped."""
    docs = []
    for path in _k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def _k8s_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in _k8s_docs() if d["kind"] == kind}


def _workloads() -> dict[str, dict[str, Any]]:
    """Deployments and StatefulSets (the registry's peers need stable names) by name."""
    return {**_k8s_kind("Deployment"), **_k8s_kind("StatefulSet")}


def _pyproject(directory: str) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((ROOT / directory / "pyproject.toml").read_text())
    return data


def _members() -> dict[str, str]:
    """Workspace package name -> its directory (relative to the root)."""
    patterns = _pyproject(".")["tool"]["uv"]["workspace"]["members"]
    found = {}
    for pattern in patterns:
        for path in sorted(ROOT.glob(f"{pattern}/pyproject.toml")):
            found[tomllib.loads(path.read_text())["project"]["name"]] = str(
                path.parent.relative_to(ROOT)
            )
    return found


def _dockerfile(directory: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / directory / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, f"{directory}/Dockerfile ends inside a continued line"
    return instructions


def _args(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _runtime_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions of the last stage (the image that ships)."""
    starts = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    return instructions[starts[-1] :]


def _required_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> set[str]:
    """The AIMP_* variables the local stack gives every service, as production must too."""
    for key in list(os.environ):
        if key.startswith("AIMP_"):
            monkeypatch.delenv(key)
    env = service_env(Home(tmp_path), Ports.from_env({}), "redis://127.0.0.1:6379/0")
    keys = {k for k in env if k.startswith("AIMP_")}
    # Kafka's port is the local Tansu's listener; only the gateway reads its credentials
    # file (checked on its own). Production adds the SQL URL and a listen address.
    # Self-preservation is switched off only for a laptop's handful of pods.
    local_only = {
        "AIMP_KAFKA_PORT",
        "AIMP_GATEWAY_CREDENTIALS_FILE",
        "AIMP_REGISTRY_SELF_PRESERVATION",
    }
    return (keys - local_only) | {
        "AIMP_DATABASE_URL",
        "AIMP_HOST",
    }


def _why(error: Exception) -> str:
    """A one-line reason from kubernetes-validate (its own message embeds the whole schema)."""
    message = getattr(error, "message", None)
    if message is None:
        return str(error)
    path = "/".join(str(p) for p in getattr(error, "absolute_path", ()))
    return f"{path}: {message}"


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes ``path`` (enough of its syntax for these files)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        if pat.startswith("**/"):
            tail = pat[3:]
            hit = any(
                fnmatch.fnmatchcase("/".join(parts[i : j + 1]), tail)
                for i in range(len(parts))
                for j in range(i, len(parts))
            )
        else:
            hit = any(fnmatch.fnmatchcase(prefix, pat) for prefix in prefixes)
        if hit:
            excluded = not negate
    return excluded


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


# -- Kubernetes ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_k8s_document_validates_strictly(version: str) -> None:
    """Every manifest document is valid against that Kubernetes version's strict schema."""
    docs = _k8s_docs()
    assert len(docs) >= 15, "expected namespace, config, RBAC and five Deployments+Services"
    failures = []
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            failures.append(f"{name} {doc.get('kind')}/{doc['metadata'].get('name')}: {_why(e)}")
    assert not failures, "\n".join(failures)


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator used above is strict: a misspelt field in a Deployment is rejected."""
    deployment = copy.deepcopy(_workloads()["gateway"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_kustomization_lists_every_yaml_file() -> None:
    """k8s/kustomization.yaml lists exactly the YAML files of k8s/ (none missing, none stale)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert set(listed) == {p.name for p in _k8s_files()}
    assert kustomization.get("namespace") == "aimp"


def test_kustomize_builds_the_manifests() -> None:
    """kubectl's built-in kustomize builds k8s/ into the same documents, still schema-valid."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(built) == len(_k8s_docs())
    failures = []
    for doc in built:
        try:
            kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {_why(e)}")
        if doc["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert doc["metadata"]["namespace"] == "aimp", doc["metadata"]["name"]
    assert not failures, "\n".join(failures)


def test_each_service_has_a_deployment_and_service_on_its_port() -> None:
    """Each aimp service has a Deployment and a Service that select the same pods on its port."""
    deployments, services = _workloads(), _k8s_kind("Service")
    assert set(deployments) == {s.name for s in SERVICES}
    # registry-peers is the registry StatefulSet's headless service (peer DNS names).
    assert set(services) - {"registry-peers"} == {s.name for s in SERVICES}
    assert _k8s_kind("StatefulSet")["registry"]["spec"]["serviceName"] == "registry-peers"
    images = {i["name"] for i in yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]}
    for svc in SERVICES:
        pod = deployments[svc.name]["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert deployments[svc.name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert services[svc.name]["spec"]["selector"].items() <= labels.items()
        (container,) = pod["spec"]["containers"]
        assert container["ports"] == [
            {"name": "http", "containerPort": svc.port, "protocol": "TCP"}
        ]
        assert services[svc.name]["spec"]["ports"][0]["targetPort"] == "http"
        assert services[svc.name]["spec"]["ports"][0]["port"] == svc.port
        assert container["image"].split(":")[0] == f"aimp/{svc.name}"
        assert f"aimp/{svc.name}" in images, "kustomization.yaml must pin every image"


def test_each_deployment_has_probes_resources_and_runs_as_non_root() -> None:
    """Every Deployment has /readyz and /healthz probes, requests and limits, and runs non-root."""
    for name, deployment in _workloads().items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][kind].keys(), name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/var/lib/aimp", "/tmp"} <= mounts, f"{name}: a read-only root needs these"


def test_each_deployment_gets_the_environment_a_service_needs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ConfigMap plus each Deployment's env give every variable the local stack gives."""
    required = _required_env(monkeypatch, tmp_path)
    config = _k8s_kind("ConfigMap")["aimp-config"]["data"]
    for name, deployment in _workloads().items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": "aimp-config"}}], name
        env = set(config) | {e["name"] for e in container["env"]}
        assert required <= env, f"{name} lacks {sorted(required - env)}"
    (gateway,) = _workloads()["gateway"]["spec"]["template"]["spec"]["containers"]
    assert "AIMP_GATEWAY_CREDENTIALS_FILE" in {e["name"] for e in gateway["env"]}


def test_database_url_is_built_from_config_and_the_secret_password() -> None:
    """AIMP_DATABASE_URL references only variables defined before it, the password from aimp-db."""
    config = _k8s_kind("ConfigMap")["aimp-config"]["data"]
    for name, deployment in _workloads().items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        defined = set(config)
        for var in container["env"]:
            if var["name"] == "AIMP_DATABASE_URL":
                refs = set(re.findall(r"\$\(([A-Z0-9_]+)\)", var["value"]))
                assert refs and refs <= defined, f"{name}: undefined {refs - defined}"
                assert "AIMP_POSTGRES_PASSWORD" in refs
            if var["name"] == "AIMP_POSTGRES_PASSWORD":
                assert var["valueFrom"]["secretKeyRef"] == {"name": "aimp-db", "key": "password"}
            defined.add(var["name"])
        assert "AIMP_DATABASE_URL" in defined, name


def test_deploy_control_alone_may_use_the_kubernetes_api() -> None:
    """deploy-control's ServiceAccount may manage deployments, scale, services, pods and logs."""
    deployments = _workloads()
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        if name == "deploy-control":
            assert pod["serviceAccountName"] == "deploy-control"
        else:
            assert pod["automountServiceAccountToken"] is False, name
    assert "deploy-control" in _k8s_kind("ServiceAccount")

    def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {
            (group, resource, verb)
            for rule in rules
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }

    (role,) = _k8s_kind("Role").values()
    rules = granted(role["rules"])
    manage = {"get", "list", "watch", "create", "update", "patch", "delete"}
    assert {("apps", "deployments", v) for v in manage} <= rules
    assert {("apps", "deployments/scale", v) for v in ("get", "update", "patch")} <= rules
    assert {("", "services", v) for v in manage} <= rules
    assert {("", "pods", v) for v in ("get", "list", "watch", "delete")} <= rules
    assert ("", "pods/log", "get") in rules
    assert not any(v == "*" or r == "*" or g == "*" for g, r, v in rules), "no wildcards"
    (cluster_role,) = _k8s_kind("ClusterRole").values()
    assert granted(cluster_role["rules"]) == {("", "nodes", v) for v in ("get", "list", "watch")}
    subject = [{"kind": "ServiceAccount", "name": "deploy-control", "namespace": "aimp"}]
    for kind, target in (("RoleBinding", role), ("ClusterRoleBinding", cluster_role)):
        (binding,) = _k8s_kind(kind).values()
        assert binding["subjects"] == subject
        assert binding["roleRef"]["name"] == target["metadata"]["name"]


def test_no_secret_value_is_committed_in_k8s() -> None:
    """No Secret object ships; secret-looking variables come only from the documented Secrets."""
    assert not [d for _, d in _k8s_docs() if d["kind"] == "Secret"]
    for key, value in _k8s_kind("ConfigMap")["aimp-config"]["data"].items():
        assert not SECRET_NAME.search(key), key
        assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), f"{key} carries a password"
    readme = (K8S / "README.md").read_text()
    for name, deployment in _workloads().items():
        pod = deployment["spec"]["template"]["spec"]
        for var in pod["containers"][0]["env"]:
            if SECRET_NAME.search(var["name"]) and not var["name"].endswith("_FILE"):
                assert "value" not in var, f"{name}: {var['name']} has a literal value"
                assert var["valueFrom"]["secretKeyRef"]["name"] in K8S_SECRETS
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in K8S_SECRETS, name
    for secret in K8S_SECRETS:
        assert f"create secret generic {secret}" in readme, (
            f"README must say how to create {secret}"
        )


# -- docker compose -----------------------------------------------------------------------


def test_compose_builds_every_service_from_an_existing_dockerfile() -> None:
    """Every aimp service in compose builds from the repository root with its own Dockerfile."""
    services = _compose()["services"]
    built = {name: s for name, s in services.items() if "build" in s}
    assert set(built) == {s.name for s in SERVICES}, "hpa-controller is not packaged yet"
    for svc in SERVICES:
        build = built[svc.name]["build"]
        context = ROOT / build["context"]
        assert context.resolve() == ROOT, f"{svc.name}: the context must be the workspace root"
        assert build["dockerfile"] == f"{svc.directory}/Dockerfile"
        assert (context / build["dockerfile"]).is_file()


def test_compose_uses_official_infrastructure_images() -> None:
    """Kafka, Redis and PostgreSQL run from their official images with healthchecks."""
    services = _compose()["services"]
    for name, image in INFRA_IMAGES.items():
        assert services[name]["image"].startswith(image), name
        assert services[name]["healthcheck"]["test"], name
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller", "single-node KRaft"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka_env
    assert kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka_env['KAFKA_NODE_ID']}@kafka:9093"


def test_compose_services_have_healthchecks_on_their_own_port() -> None:
    """Each aimp service's compose healthcheck calls GET /healthz on that service's port."""
    services = _compose()["services"]
    for svc in SERVICES:
        check = services[svc.name]["healthcheck"]
        test = " ".join(check["test"])
        assert f"http://127.0.0.1:{svc.port}/healthz" in test, svc.name
        env = services[svc.name]["environment"]
        assert env[_port_var(svc.name)] == str(svc.port), svc.name


def test_compose_services_get_the_environment_they_need(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every aimp service gets the local stack's variables, pointed at the compose peers."""
    required = _required_env(monkeypatch, tmp_path)
    services = _compose()["services"]
    for svc in SERVICES:
        env = services[svc.name]["environment"]
        assert required <= set(env), f"{svc.name} lacks {sorted(required - set(env))}"
        assert env["AIMP_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["AIMP_DATABASE_URL"]
        assert env["AIMP_REDIS_URL"].startswith("redis://redis:")
        assert env["AIMP_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["AIMP_REGISTRY_URL"] == "http://registry:8761/eureka"
        assert env["AIMP_JWKS_URL"] == "http://gateway:8080/.well-known/jwks.json"
        assert env["AIMP_HOST"] == "0.0.0.0"


def test_compose_gateway_reads_credentials_from_a_secret_file() -> None:
    """The gateway's credentials file is a compose secret whose path must be given at start."""
    compose = _compose()
    gateway = compose["services"]["gateway"]
    (secret,) = gateway["secrets"]
    assert gateway["environment"]["AIMP_GATEWAY_CREDENTIALS_FILE"] == f"/run/secrets/{secret}"
    source = compose["secrets"][secret]["file"]
    assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", source), "no default path: it must be given"


def test_compose_start_order_waits_for_healthy_dependencies() -> None:
    """Every depends_on waits for service_healthy, on a service that has a healthcheck."""
    services = _compose()["services"]
    for name, service in services.items():
        for dep, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dep}"
            assert "healthcheck" in services[dep], f"{name} waits on {dep}, which has none"
    assert set(services["gateway"]["depends_on"]) >= {"postgres", "redis", "kafka", "registry"}
    assert "stats" in services["gateway"]["depends_on"]
    assert set(services["stats"]["depends_on"]) >= {"postgres", "kafka"}


def test_no_secret_value_is_committed_in_compose() -> None:
    """Secret-looking compose values are required interpolations (${VAR:?...}), not literals."""
    required_ref = re.compile(r"\$\{[A-Z0-9_]+:\?[^}]*\}")
    services = _compose()["services"]
    for name, service in services.items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: use the mapping form of environment"
        for key, value in env.items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                assert required_ref.fullmatch(str(value)), f"{name}: {key} is a literal"
        url = env.get("AIMP_DATABASE_URL")
        if url:
            password = re.match(r"postgresql://[^:]+:(.+)@[^@]+$", url)
            assert password and required_ref.fullmatch(password.group(1)), name
    assert "PRIVATE KEY" not in COMPOSE.read_text()


def test_compose_file_is_valid_for_docker_compose(tmp_path: Path) -> None:
    """`docker compose config` accepts the file when the required variables are given."""
    docker = shutil.which("docker")
    compose_cmd: list[str] | None = None
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            compose_cmd = [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if compose_cmd is None and standalone is not None:
        compose_cmd = [standalone]
    if compose_cmd is None:
        pytest.skip("docker compose is not installed")
    creds = tmp_path / "credentials.json"
    creds.write_text("{}")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AIMP_POSTGRES_PASSWORD": "test-only",
        "AIMP_CREDENTIALS_FILE": str(creds),
    }
    ok = subprocess.run(
        [*compose_cmd, "-f", str(COMPOSE), "config", "-q"], env=env, capture_output=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr.decode()
    del env["AIMP_POSTGRES_PASSWORD"]
    refused = subprocess.run(
        [*compose_cmd, "-f", str(COMPOSE), "config", "-q"], env=env, capture_output=True, timeout=60
    )
    assert refused.returncode != 0, "compose must refuse to start without the DB password"


# -- Dockerfiles --------------------------------------------------------------------------


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.name)
def test_dockerfile_runs_a_console_script_of_its_project(image: Image) -> None:
    """The image's command is a console script that its project's pyproject.toml declares."""
    instructions = _runtime_stage(_dockerfile(image.directory))
    entrypoint = _args(instructions, "ENTRYPOINT")
    cmd = _args(instructions, "CMD")
    assert cmd, "no CMD"
    command = _exec_form(entrypoint[-1]) if entrypoint else _exec_form(cmd[-1])
    scripts = _pyproject(image.directory)["project"]["scripts"]
    assert command[0] in scripts, f"{command[0]} is not one of {sorted(scripts)}"


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.name)
def test_dockerfile_syncs_its_package_from_the_lock(image: Image) -> None:
    """The image installs its own package with `uv sync --frozen --no-dev` from pinned uv."""
    instructions = _dockerfile(image.directory)
    package = _pyproject(image.directory)["project"]["name"]
    runs = " ".join(_args(instructions, "RUN"))
    syncs = re.findall(r"uv sync ([^&;]*)", runs)
    assert syncs, "no uv sync"
    for flags in syncs:
        assert "--frozen" in flags and "--no-dev" in flags, flags
        assert f"--package {package}" in flags, flags
    assert re.search(r'pip install [^&;]*"uv==\$\{UV_VERSION\}"', runs), "uv comes from PyPI"
    assert any(a.startswith("UV_VERSION=") for a in _args(instructions, "ARG"))
    froms = _args(instructions, "FROM")
    base = [a for a in _args(instructions, "ARG") if a.startswith("PYTHON_IMAGE=")]
    assert base and base[0].split("=", 1)[1].startswith("python:3.11-slim"), base
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms), froms


def test_every_dockerfile_pins_the_same_uv() -> None:
    """All images install one exact uv version, so every image resolves the lock alike."""
    versions = set()
    for image in IMAGES:
        for arg in _args(_dockerfile(image.directory), "ARG"):
            if arg.startswith("UV_VERSION="):
                versions.add(arg.split("=", 1)[1])
    assert len(versions) == 1 and re.fullmatch(r"\d+\.\d+\.\d+", versions.pop())


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.name)
def test_dockerfile_copies_every_workspace_dependency(image: Image) -> None:
    """The build copies the lock, the root manifest and each workspace member the package needs."""
    members = _members()
    copies = [a.split() for a in _args(_dockerfile(image.directory), "COPY")]
    sources = {src for args in copies if not args[0].startswith("--from") for src in args[:-1]}
    needed = {"pyproject.toml", "uv.lock", image.directory}
    todo = [_pyproject(image.directory)["project"]["name"]]
    while todo:
        for dep in _pyproject(members[todo.pop()])["project"].get("dependencies", []):
            name = re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0]
            if name in members and members[name] not in needed:
                needed.add(members[name])
                todo.append(name)
    assert needed <= sources, f"missing COPY of {sorted(needed - sources)}"
    ignore = _dockerignore_patterns()
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not _dockerignored(src, ignore), f".dockerignore excludes {src}"


@pytest.mark.parametrize("image", IMAGES, ids=lambda i: i.name)
def test_dockerfile_runs_unprivileged_with_a_healthcheck(image: Image) -> None:
    """The shipped stage runs as a non-root user, exposes its port and has a HEALTHCHECK."""
    stage = _runtime_stage(_dockerfile(image.directory))
    users = _args(stage, "USER")
    assert users and users[-1].split(":")[0] not in {"0", "root"}, users
    (healthcheck,) = _args(stage, "HEALTHCHECK")
    exposed = {int(p.split("/")[0]) for a in _args(stage, "EXPOSE") for p in a.split()}
    if image.port is not None:
        assert image.port in exposed
        env = " ".join(_args(stage, "ENV"))
        assert f"{_port_var(image.name)}={image.port}" in env
        assert "AIMP_HOST=0.0.0.0" in env, "a service in a container must listen beyond lo"
        assert "/healthz" in healthcheck and _port_var(image.name) in healthcheck
    else:
        assert exposed, "EXPOSE the port the pod serves on"


def test_dockerignore_keeps_secrets_and_local_state_out_of_images() -> None:
    """The build context excludes virtualenvs, git, local state and credential files."""
    ignore = _dockerignore_patterns()
    for path in (
        ".git",
        ".venv",
        "services/gateway/.venv",
        ".env",
        "secrets/credentials.json",
        "credentials.json",
        "keys/gateway-signing.pem",
        ".aimp/credentials.json",
        "services/gateway/tests/test_x.py",
    ):
        assert _dockerignored(path, ignore), path
    for path in ("libs/core/src/aimp_core/app.py", "uv.lock", "services/stats/pyproject.toml"):
        assert not _dockerignored(path, ignore), path
