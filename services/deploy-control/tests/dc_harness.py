"""Set-up shared by the deploy-control API tests: deploy-control in-process or served by
uvicorn, pods of real processes (oip_pod.py standing in for Triton), tokens and polling.

Test files import it relatively (``from .dc_harness import ...``): they run with
--import-mode=importlib, which makes this folder a package.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from aimp_core.auth import JwksVerifier
from aimp_core.net import free_port, wait_http_ok
from aimp_deploy_control.app import create_app
from aimp_deploy_control.backend import PodBackend
from aimp_deploy_control.local_backend import LocalProcessBackend
from aimp_deploy_control.observe_settings import PodObserveSettings
from aimp_deploy_control.settings import DeployControlSettings

from .conftest import KeyServer

T = TypeVar("T")

#: Nothing listens on the discard port: in-process tests need no registry.
NO_REGISTRY = "http://127.0.0.1:9/eureka"
OIP_POD = Path(__file__).with_name("oip_pod.py")


def oip_pod(mode: str) -> list[str]:
    """The pod command of oip_pod.py in ``mode`` (``ticks`` or ``hold``)."""
    return [sys.executable, str(OIP_POD), "--mode", mode]


def new_home(factory: pytest.TempPathFactory, prefix: str) -> Path:
    """A fresh, empty AIMP home in a new temporary folder named after ``prefix``."""
    home = factory.mktemp(prefix) / "aimp-home"
    home.mkdir()
    return home


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 30) -> T:
    """Polls ``probe`` every 50 ms until it returns a value; fails naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def bearer(keys: KeyServer, *roles: str, ttl_s: float = 300) -> dict[str, str]:
    """An Authorization header with a fresh token holding ``roles``."""
    return {"Authorization": f"Bearer {keys.mint(list(roles), ttl_s=ttl_s)}"}


def make_app(
    settings: DeployControlSettings, keys: KeyServer, backend: PodBackend | None = None
) -> FastAPI:
    """deploy-control verifying tokens against the test key set."""
    verifier = JwksVerifier(keys.jwks_url, issuer=keys.issuer)
    return create_app(settings, verifier=verifier, backend=backend)


@asynccontextmanager
async def in_process(keys: KeyServer, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """deploy-control with ``settings`` (no registry unless given), its lifespan running,
    and a client calling it in-process."""
    settings.setdefault("registry_url", NO_REGISTRY)
    app = make_app(
        DeployControlSettings(jwks_url=keys.jwks_url, token_issuer=keys.issuer, **settings), keys
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dc") as http:
            yield http


def local_settings(
    home: Path, registry_url: str, keys: KeyServer, pod_command: list[str], **more: Any
) -> DeployControlSettings:
    """deploy-control running local pods of ``pod_command`` (SQLite in ``home``), supervising
    every 0.1 s."""
    return DeployControlSettings(
        home=home,
        database_url=None,
        registry_url=registry_url,
        jwks_url=keys.jwks_url,
        token_issuer=keys.issuer,
        pod_command=pod_command,
        supervise_interval_s=0.1,
        **more,
    )


@contextmanager
def fast_sidecars() -> Iterator[None]:
    """Sidecars started meanwhile poll readiness every 0.1 s and drain at once."""
    env = pytest.MonkeyPatch()
    env.setenv("AIMP_SIDECAR_READY_POLL_INTERVAL_S", "0.1")  # inherited by the sidecars
    env.setenv("AIMP_SIDECAR_DRAIN_GRACE_S", "0")
    try:
        yield
    finally:
        env.undo()


@dataclass
class Api:
    """deploy-control served over HTTP, called with an operator's token."""

    url: str
    headers: dict[str, str]
    http: httpx.Client

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path, headers=self.headers)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(path, json=body, headers=self.headers)

    def view(self, name: str) -> dict[str, Any]:
        resp = self.get(f"/v1/deployments/{name}")
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def pod(self, name: str) -> dict[str, Any]:
        """The first pod of deployment ``name``."""
        return dict(self.view(name)["pods"][0])

    def deploy(self, name: str, model_file: Path) -> None:
        """Deploys ``model_file`` as an sklearn model named ``name`` (201 expected)."""
        body = {"name": name, "model_file": str(model_file), "framework": "sklearn"}
        resp = self.post("/v1/deployments", body)
        assert resp.status_code == 201, resp.text


@contextmanager
def served(app: FastAPI, keys: KeyServer) -> Iterator[Api]:
    """Runs ``app`` under uvicorn on a free port until the block ends."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(url + "/healthz", timeout_s=20)
        headers = bearer(keys, "operator", ttl_s=600)
        with httpx.Client(base_url=url, timeout=10) as http:
            yield Api(url, headers, http)
    finally:
        server.should_exit = True
        thread.join(60)


@contextmanager
def serve_pods(
    home: Path,
    registry_url: str,
    keys: KeyServer,
    pod_command: list[str],
    observe: PodObserveSettings | None = None,
    **more: Any,
) -> Iterator[Api]:
    """deploy-control under uvicorn running local pods of ``pod_command`` with fast sidecars;
    ``observe`` replaces the pod-log settings, ``more`` adds deploy-control settings."""
    with fast_sidecars():
        settings = local_settings(home, registry_url, keys, pod_command, **more)
        backend = None if observe is None else LocalProcessBackend(settings, observe)
        app = make_app(settings, keys, backend)
        if observe is not None:
            app.state.pod_observe = observe
        with served(app, keys) as api:
            yield api
