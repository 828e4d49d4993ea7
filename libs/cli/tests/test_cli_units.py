"""Unit tests of the CLI's pure pieces: ports, credentials and pid records."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from aimp_cli.home import Home, ensure_credentials
from aimp_cli.stack import Ports, service_env
from aimp_core.processes import read_pid, spawn, stop, write_pid


def test_ports_default_to_design_and_follow_env_overrides() -> None:
    """Ports are DESIGN.md's defaults unless AIMP_<SERVICE>_PORT says otherwise."""
    assert Ports.from_env({}).gateway == 8080
    assert Ports.from_env({}).deploy_control == 8090
    assert Ports.from_env({"AIMP_GATEWAY_PORT": "18080"}).gateway == 18080


@pytest.mark.parametrize("value", ["abc", "0", "70000"])
def test_bad_port_override_is_refused_with_the_variable_named(value: str) -> None:
    """A port override that is not a valid port stops the CLI with a message naming it."""
    with pytest.raises(SystemExit, match="AIMP_STATS_PORT"):
        Ports.from_env({"AIMP_STATS_PORT": value})


def test_credentials_are_created_once_with_private_mode(tmp_path: Path) -> None:
    """credentials.json is created 0600 with random secrets and never overwritten."""
    home = Home(tmp_path / "h")
    home.make()
    first = ensure_credentials(home)
    assert oct(home.credentials.stat().st_mode & 0o777) == "0o600"
    assert len(first["admin"]["password"]) >= 16
    assert first["clients"][0]["roles"] == ["invoker"]
    assert ensure_credentials(home) == first
    other_home = Home(tmp_path / "other")
    other_home.make()
    assert ensure_credentials(other_home)["admin"]["password"] != first["admin"]["password"]


def test_service_env_points_every_service_at_the_same_peers(tmp_path: Path) -> None:
    """Every service gets the same registry, Kafka, Redis and token settings."""
    env = service_env(Home(tmp_path), Ports.from_env({}), "redis://127.0.0.1:6379/3")
    assert env["AIMP_REGISTRY_URL"] == "http://127.0.0.1:8761/eureka"
    assert env["AIMP_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"
    assert env["AIMP_REDIS_URL"] == "redis://127.0.0.1:6379/3"
    assert env["AIMP_TOKEN_ISSUER"] == "http://127.0.0.1:8080"


def test_pid_record_of_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    """A pid file whose start time does not match the live process names nothing."""
    pid_file = tmp_path / "x.pid"
    write_pid(pid_file, os.getpid())
    assert read_pid(pid_file) is not None
    assert read_pid(pid_file).process() is not None  # type: ignore[union-attr]
    data = json.loads(pid_file.read_text())
    data["started_at"] -= 100
    pid_file.write_text(json.dumps(data))
    assert read_pid(pid_file).process() is None  # type: ignore[union-attr]


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    """Stopping a spawned process also ends the children it started."""
    script = (
        "import subprocess, sys, time;"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "time.sleep(60)"
    )
    record = spawn(
        [sys.executable, "-c", script],
        env=dict(os.environ),
        log_file=tmp_path / "p.log",
        pid_file=tmp_path / "p.pid",
        cwd=tmp_path,
    )
    proc = record.process()
    assert proc is not None
    deadline = time.monotonic() + 5
    while not proc.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    children = proc.children(recursive=True)
    assert children
    assert stop(record, timeout_s=5)
    assert record.process() is None
    assert all(not c.is_running() or c.status() == "zombie" for c in children)
