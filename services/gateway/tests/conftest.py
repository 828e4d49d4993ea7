"""Gateway test helpers: signing keys, a credentials file and a SQLite store under tmp."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from aiohttp import web

from aimp_core.db import make_engine
from aimp_core.registry_client import META_REVISION, EurekaClient, instance_document
from aimp_gateway.keys import SigningKey, load_or_create
from aimp_gateway.settings import GatewaySettings
from aimp_gateway.store import Store

from .gateways import (
    ADMIN_PASSWORD,
    AiohttpServer,
    Backends,
    admin_token,
    client_token,
    start_gateway,
    write_credentials_file,
)

ISSUER = "http://gateway.test"


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """One RSA key for the session (generating keys is slow)."""
    return load_or_create(tmp_path_factory.mktemp("keys") / "gateway-signing.pem")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A real SQLite store in a fresh file."""
    s = Store(make_engine(f"sqlite:///{tmp_path / 'gateway.db'}"))
    s.create_tables()
    return s


CredentialsWriter = Callable[..., Path]


@pytest.fixture
def write_credentials(tmp_path: Path) -> CredentialsWriter:
    """Write a credentials file (DESIGN.md format) and return its path."""

    def write(
        *, password: str = ADMIN_PASSWORD, clients: list[dict[str, Any]] | None = None
    ) -> Path:
        path = tmp_path / "credentials.json"
        admin = {"username": "admin", "password": password}
        path.write_text(json.dumps({"admin": admin, "clients": clients or []}))
        return path

    return write


# -- integration parts: a real OIP upstream, a real gateway on a free port -------------


@dataclass
class Seen:
    """One request the upstream received, and the exact bytes it answered."""

    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body: bytes
    response_body: bytes = b""


class OipUpstream(AiohttpServer):
    """A small aiohttp server speaking a piece of the Open Inference Protocol (KServe v2).

    ``infer`` doubles every FP32 input (JSON or binary tensor data) and answers in
    binary when the caller asks for binary outputs, as Triton does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []

    async def _metadata(self, request: web.Request) -> web.Response:
        self._record(request, b"")
        model = request.match_info["model"]
        return web.json_response(
            {
                "name": model,
                "versions": ["1"],
                "platform": "aimp-test",
                "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 4]}],
            }
        )

    async def _ready(self, request: web.Request) -> web.Response:
        self._record(request, b"")
        return web.Response(status=200)

    async def _infer(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = self._record(request, body)
        header_len = request.headers.get("Inference-Header-Content-Length")
        json_len = int(header_len) if header_len else len(body)
        req = json.loads(body[:json_len])
        offset = json_len
        binary_out = any(
            o.get("parameters", {}).get("binary_data", False) for o in req.get("outputs", [])
        )
        outputs, blobs = [], []
        for inp in req["inputs"]:
            size = inp.get("parameters", {}).get("binary_data_size")
            if size is not None:
                arr = np.frombuffer(body[offset : offset + size], dtype=np.float32)
                offset += size
            else:
                arr = np.asarray(inp["data"], dtype=np.float32)
            doubled = (arr * 2).astype(np.float32)
            out: dict[str, Any] = {
                "name": "OUTPUT" + inp["name"].removeprefix("INPUT"),
                "datatype": "FP32",
                "shape": inp["shape"],
            }
            if binary_out:
                raw = doubled.tobytes()
                out["parameters"] = {"binary_data_size": len(raw)}
                blobs.append(raw)
            else:
                out["data"] = doubled.tolist()
            outputs.append(out)
        head = json.dumps(
            {"model_name": request.match_info["model"], "model_version": "1", "outputs": outputs}
        ).encode()
        headers = {"x-pod-header": "pod-1"}
        if binary_out:
            headers["Inference-Header-Content-Length"] = str(len(head))
            headers["Content-Type"] = "application/octet-stream"
        else:
            headers["Content-Type"] = "application/json"
        seen.response_body = head + b"".join(blobs)
        return web.Response(body=seen.response_body, headers=headers)

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._record(request, body)
        return web.json_response(
            {"method": request.method, "raw_path": request.raw_path, "body_len": len(body)},
            headers={"x-pod-header": "pod-1"},
        )

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.match_info["seconds"]))
        return web.Response(text="late")

    def _record(self, request: web.Request, body: bytes) -> Seen:
        seen = Seen(request.method, request.raw_path, list(request.headers.items()), body)
        self.seen.append(seen)
        return seen

    def add_routes(self, app: web.Application) -> None:
        for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            app.router.add_get(prefix, self._metadata)
            app.router.add_get(prefix + "/ready", self._ready)
            app.router.add_post(prefix + "/infer", self._infer)
        app.router.add_route("*", "/echo/{tail:.*}", self._echo)
        app.router.add_get("/slow/{seconds}", self._slow)


def register(registry_url: str, app: str, port: int, *, status: str = "UP", rev: str = "r1") -> str:
    """Register one instance of ``app`` in the real registry; returns its instance id."""
    instance_id = f"{app.lower()}-{uuid.uuid4().hex[:8]}"
    document = instance_document(
        app=app, instance_id=instance_id, ip="127.0.0.1", port=port, status=status,
        metadata={META_REVISION: rev},
    )  # fmt: skip

    async def _go() -> None:
        client = EurekaClient(registry_url, timeout_s=5)
        try:
            await client.register(document)
        finally:
            await client.aclose()

    asyncio.run(_go())
    return instance_id


@dataclass
class RunningGateway:
    url: str
    settings: GatewaySettings
    upstream: OipUpstream
    model: str
    instance_id: str
    starting_model: str
    secrets: dict[str, str]

    def token(self, client_id: str) -> str:
        return client_token(self.url, client_id, self.secrets[client_id])

    def auth(self, client_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client_id)}"}

    def admin_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {admin_token(self.url)}"}


#: Clients the integration gateway knows: id -> roles.
TEST_CLIENTS = {
    "invoker-app": ["invoker"],
    "narrow-app": ["invoke:some-other-service"],
    "burst-app": ["invoker"],
    "triton-app": ["invoker"],
    "eject-app": ["invoker"],
    "retry-app": ["invoker"],
    "notsent-app": ["invoker"],
    "stream-app": ["invoker"],
}
#: A low limit so that 429 is reachable in a test: 2 calls/s, bursts of 20.
TEST_RATE_PER_S, TEST_BURST = 2.0, 20


@pytest.fixture(scope="session")
def oip_upstream() -> Iterator[OipUpstream]:
    server = OipUpstream()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def backends(redis_url: str, registry_url: str, kafka_bootstrap: str) -> Backends:
    """The real Redis, registry and Tansu, for ``gateways.start_gateway``."""
    return Backends(redis_url, registry_url, kafka_bootstrap)


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client of the real Redis (2 s socket timeout)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    yield client
    client.close()


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, backends: Backends, oip_upstream: OipUpstream
) -> Iterator[RunningGateway]:
    """The real gateway (uvicorn, lifespan) against real Redis, registry, Tansu and upstream."""
    home = tmp_path_factory.mktemp("gateway-home")
    suffix = uuid.uuid4().hex[:6]
    secrets = {cid: f"{cid}-secret-{suffix}" for cid in TEST_CLIENTS}
    creds = write_credentials_file(home, TEST_CLIENTS, secrets)
    model, starting = f"echo-{suffix}", f"starting-{suffix}"
    instance_id = register(backends.registry_url, model.upper(), oip_upstream.port)
    register(backends.registry_url, starting.upper(), oip_upstream.port, status="STARTING")
    started = start_gateway(
        backends, home, creds,
        gateway_rate_per_s=TEST_RATE_PER_S, gateway_rate_burst=TEST_BURST,
        gateway_instance_header=True,
    )  # fmt: skip
    running = RunningGateway(
        started.url, started.settings, oip_upstream, model, instance_id, starting, secrets
    )
    headers = running.auth("invoker-app")
    deadline = time.monotonic() + 10
    while httpx.get(f"{started.url}/v2/models/{model}/ready", headers=headers).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway never routed to the registered upstream")
        time.sleep(0.1)
    yield running
    started.server.stop()


@pytest.fixture
def register_instance(registry_url: str) -> Callable[..., str]:
    """Register an instance in the real registry: ``register_instance(app, port, status=...)``."""

    def go(app: str, port: int, *, status: str = "UP", rev: str = "r1") -> str:
        return register(registry_url, app, port, status=status, rev=rev)

    return go
