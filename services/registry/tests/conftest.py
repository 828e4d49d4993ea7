"""Fixtures for the registry's tests: a fake clock, registration bodies, a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aimp_core.net import free_port, wait_http_ok
from aimp_core.registry_client import instance_document

#: A fixed, realistic epoch-millisecond start so client timestamps compare sensibly.
START_MS = 1_700_000_000_000


class FakeClock:
    """A clock the test moves by hand (epoch milliseconds)."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _body(
    app: str = "iris",
    instance_id: str = "iris-1",
    *,
    port: int = 8080,
    status: str = "UP",
    lease_s: int = 90,
    metadata: dict[str, str] | None = None,
    dirty_ms: int | None = None,
) -> dict[str, Any]:
    """A registration body as aimp's own client builds it."""
    doc = instance_document(
        app=app,
        instance_id=instance_id,
        ip="127.0.0.1",
        port=port,
        status=status,
        metadata=metadata,
        lease_duration_s=lease_s,
    )
    if dirty_ms is not None:
        doc["instance"]["lastDirtyTimestamp"] = str(dirty_ms)
    return doc


@pytest.fixture
def make_body() -> Any:
    """Builds registration bodies: ``make_body(app, instance_id, port=, status=, ...)``."""
    return _body


@dataclass
class RegistryProcess:
    """A registry started as its own process by the console script."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log: Path

    @property
    def eureka_url(self) -> str:
        return f"{self.base_url}/eureka"


@pytest.fixture(scope="module")
def registry_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """``aimp-registry`` on a free port with its own AIMP_HOME, stopped with SIGTERM."""
    home = tmp_path_factory.mktemp("registry-home")
    port = free_port()
    env = {**os.environ, "AIMP_REGISTRY_PORT": str(port), "AIMP_HOME": str(home)}
    exe = Path(sys.executable).parent / "aimp-registry"
    log = home / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe)], stdout=out, stderr=subprocess.STDOUT, env=env)
    running = RegistryProcess(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_http_ok(f"{running.base_url}/healthz", timeout_s=20)
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
