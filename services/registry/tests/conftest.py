"""Fixtures for the registry's tests: a fake clock, registration bodies, a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
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


class RegistryNode:
    """A registry started as its own process by the console script, on a fixed port and
    AIMP_HOME so that it can be killed and started again with the same state."""

    def __init__(self, home: Path, port: int | None = None, **env: str) -> None:
        self.home = home
        self.port = port or free_port()
        self.env = dict(env)
        self.log = home / f"registry-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def eureka_url(self) -> str:
        return f"{self.base_url}/eureka"

    def spawn(self) -> None:
        """Start the process without waiting for it to answer."""
        env = {
            **os.environ,
            "AIMP_REGISTRY_PORT": str(self.port),
            "AIMP_HOME": str(self.home),
            "AIMP_REGISTRY_PEER_SYNC_TIMEOUT_S": "2",
            **self.env,
        }
        exe = Path(sys.executable).parent / "aimp-registry"
        with open(self.log, "ab") as out:
            # Its own session: a signal to the test runner's process group never reaches it.
            self.proc = subprocess.Popen(
                [str(exe)], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_ready(self, timeout_s: float = 20) -> None:
        wait_http_ok(f"{self.base_url}/healthz", timeout_s=timeout_s, interval_s=0.02)

    def start(self) -> RegistryNode:
        self.spawn()
        self.wait_ready()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def terminate(self) -> int | None:
        """SIGTERM and wait for the graceful stop; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def status(self) -> dict[str, Any]:
        """This node's ``GET /eureka/status``."""
        body: dict[str, Any] = httpx.get(f"{self.eureka_url}/status", timeout=5).json()
        return body


#: Kept for the older tests: the module-scoped registry is a RegistryNode.
RegistryProcess = RegistryNode


@pytest.fixture(scope="module")
def registry_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryNode]:
    """``aimp-registry`` on a free port with its own AIMP_HOME, stopped with SIGTERM."""
    node = RegistryNode(tmp_path_factory.mktemp("registry-home"))
    try:
        yield node.start()
    finally:
        node.terminate()


@pytest.fixture
def start_nodes(tmp_path: Path) -> Iterator[Any]:
    """Starts registry processes (each with its own AIMP_HOME), stopped after the test.

    ``start_nodes(n, peers=True, **env)`` starts n nodes at once; with ``peers`` each
    one lists the others in AIMP_REGISTRY_PEERS.
    """
    started: list[RegistryNode] = []

    def _start(count: int, *, peers: bool = True, **env: str) -> list[RegistryNode]:
        ports = [free_port() for _ in range(count)]
        nodes = []
        for i, port in enumerate(ports):
            home = tmp_path / f"node-{port}"
            home.mkdir()
            others = [f"http://127.0.0.1:{p}/eureka" for j, p in enumerate(ports) if j != i]
            extra = {"AIMP_REGISTRY_PEERS": ",".join(others)} if peers else {}
            nodes.append(RegistryNode(home, port, **extra, **env))
        started.extend(nodes)
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.wait_ready()
        return nodes

    yield _start
    for node in started:
        node.terminate()
