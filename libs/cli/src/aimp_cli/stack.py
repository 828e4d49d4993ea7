"""The components of the local stack, in start order, and how each is checked.

This module is data plus tiny pure helpers; :mod:`aimp_cli.supervisor` does the I/O.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aimp_cli.home import Home, deploy_control_client, ensure_credentials
from aimp_core.settings import DEFAULT_PORTS


def bin_path(command: str) -> str:
    """An executable installed beside the running interpreter (the workspace venv)."""
    return str(Path(sys.executable).parent / command)


@dataclass(frozen=True)
class Component:
    """One long-running process of the local stack."""

    name: str
    argv: tuple[str, ...]
    port: int
    #: "http" components answer GET /healthz and /readyz; "tcp" ones only accept connections.
    kind: str = "http"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        if self.kind == "http":
            return f"http://127.0.0.1:{self.port}"
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Ports:
    gateway: int
    registry: int
    deploy_control: int
    throttle: int
    stats: int
    kafka: int

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Ports:
        """Defaults from DESIGN.md, each overridable by ``AIMP_<SERVICE>_PORT``."""
        source = os.environ if env is None else env

        def port(key: str) -> int:
            raw = source.get(f"AIMP_{key.upper()}_PORT", str(DEFAULT_PORTS[key]))
            try:
                value = int(raw)
            except ValueError:
                raise SystemExit(f"AIMP_{key.upper()}_PORT={raw!r} is not a port number") from None
            if not 0 < value < 65536:
                raise SystemExit(f"AIMP_{key.upper()}_PORT={value} is outside 1-65535")
            return value

        return cls(
            gateway=port("gateway"),
            registry=port("registry"),
            deploy_control=port("deploy_control"),
            throttle=port("throttle"),
            stats=port("stats"),
            kafka=port("kafka"),
        )


#: Where `make native` leaves the native pods, relative to the repository root.
NATIVE_PODS = {
    "cpp": Path("inference/cpp/build/aimp-cpp-pod"),
    "java": Path("inference/java/build/aimp-java-pod"),
}


def native_pod_commands(repo_root: Path | None) -> dict[str, str]:
    """Built native pods by runtime; ``AIMP_DEPLOY_CONTROL_<RT>_POD_COMMAND`` overrides."""
    found: dict[str, str] = {}
    for runtime, relative in NATIVE_PODS.items():
        override = os.environ.get(f"AIMP_DEPLOY_CONTROL_{runtime.upper()}_POD_COMMAND")
        if override:
            found[runtime] = override
        elif repo_root is not None and os.access(repo_root / relative, os.X_OK):
            found[runtime] = str(repo_root / relative)
    return found


def repo_root() -> Path | None:
    """The source checkout the CLI runs from (a workspace install), if any."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "inference").is_dir() and (parent / "pyproject.toml").is_file():
            return parent
    return None


def service_env(home: Home, ports: Ports, redis_url: str) -> dict[str, str]:
    """The environment every aimp service of the local stack gets."""
    gateway = f"http://127.0.0.1:{ports.gateway}"
    env = {k: v for k, v in os.environ.items()}
    env.update(
        {
            "AIMP_HOME": str(home.root),
            "AIMP_REGISTRY_URL": f"http://127.0.0.1:{ports.registry}/eureka",
            "AIMP_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports.kafka}",
            "AIMP_REDIS_URL": redis_url,
            "AIMP_JWKS_URL": f"{gateway}/.well-known/jwks.json",
            "AIMP_TOKEN_ISSUER": gateway,
            "AIMP_GATEWAY_CREDENTIALS_FILE": str(home.credentials),
            "AIMP_GATEWAY_PORT": str(ports.gateway),
            "AIMP_REGISTRY_PORT": str(ports.registry),
            "AIMP_DEPLOY_CONTROL_PORT": str(ports.deploy_control),
            "AIMP_THROTTLE_PORT": str(ports.throttle),
            "AIMP_STATS_PORT": str(ports.stats),
            "AIMP_KAFKA_PORT": str(ports.kafka),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # A laptop runs a handful of pods: with so few, one dead pod already looks like a
    # network partition to Eureka's self-preservation, which would then keep it listed.
    # Eureka's own advice for development is to switch it off; production keeps it on.
    env.setdefault("AIMP_REGISTRY_SELF_PRESERVATION", "false")
    return env


def deploy_control_env(home: Home) -> dict[str, str]:
    """deploy-control's own sign-in at the gateway (to set traffic splits).

    Only deploy-control gets this secret: not the other services, and not the pods
    (whose environment deploy-control builds without it).
    (aimp up writes credentials.json first; ensure_credentials adds a missing client.)
    """
    if not home.credentials.exists():
        return {}
    client = deploy_control_client(ensure_credentials(home))
    if client is None:
        return {}
    return {
        "AIMP_DEPLOY_CONTROL_CLIENT_ID": client["client_id"],
        "AIMP_DEPLOY_CONTROL_CLIENT_SECRET": client["client_secret"],
    }


def services(ports: Ports, home: Home | None = None) -> list[Component]:
    """aimp's own services in start order (each depends only on those before it)."""
    return [
        Component("registry", (bin_path("aimp-registry"),), ports.registry),
        Component("throttle", (bin_path("aimp-throttle"),), ports.throttle),
        Component("stats", (bin_path("aimp-stats"),), ports.stats),
        Component("gateway", (bin_path("aimp-gateway"),), ports.gateway),
        Component(
            "deploy-control",
            (bin_path("aimp-deploy-control"),),
            ports.deploy_control,
            extra_env=deploy_control_env(home) if home is not None else {},
        ),
    ]
