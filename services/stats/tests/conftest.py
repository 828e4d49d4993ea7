"""Fixtures for the stats tests: a real signing key served as JWKS, and a private broker."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from aimp_cli import infra
from aimp_core.net import port_open
from aimp_core.testing import KeyServer, serve_jwks

ISSUER = "http://issuer.test"


@pytest.fixture(scope="session")
def stats_keys() -> Iterator[KeyServer]:
    """A fresh RSA key and a real HTTP server answering its JWKS."""
    with serve_jwks(ISSUER) as keys:
        yield keys


def start_tansu(port: int) -> subprocess.Popen[bytes]:
    """A private Tansu broker on ``port`` (for tests that kill it; others use the shared
    ``kafka_bootstrap``), returned once it listens."""
    proc = subprocess.Popen(
        infra.tansu_argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"tansu did not listen on port {port}")
        time.sleep(0.05)
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
