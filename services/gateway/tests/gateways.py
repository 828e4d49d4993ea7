"""Pieces the gateway tests share: real gateways on free ports, their credentials files and
tokens, small background servers, a wait loop and a fake clock."""

from __future__ import annotations

import asyncio
import json
import socketserver
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from aimp_core.events import TOPIC_AUDIT
from aimp_core.net import free_port, wait_http_ok
from aimp_gateway.app import build_app
from aimp_gateway.asgi import GatewayApp
from aimp_gateway.settings import GatewaySettings

ADMIN_PASSWORD = "correct-horse-battery-staple"


class ServerThread:
    """An ASGI app served by uvicorn on a free port in a background thread (with lifespan)."""

    def __init__(self, app: Any, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, loop="asyncio", http="httptools",
            lifespan="on", log_config=None, access_log=False,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        wait_http_ok(self.url + "/healthz", timeout_s=20)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(20)


class AiohttpServer(ABC):
    """An aiohttp app on a free port, served from its own event loop in a background thread."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Add this server's handlers to ``app``."""

    async def _start(self) -> None:
        app = web.Application()
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def tcp_server(handler: type[socketserver.BaseRequestHandler]) -> Iterator[int]:
    """A threaded TCP server on a free port answering with ``handler``; yields the port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def write_credentials_file(
    home: Path, roles: Mapping[str, list[str]], secrets: Mapping[str, str]
) -> Path:
    """Write ``home/credentials.json`` (DESIGN.md format): the admin user with
    ``ADMIN_PASSWORD`` and one client per entry of ``roles``; returns its path."""
    path = home / "credentials.json"
    clients = [
        {"client_id": cid, "client_secret": secrets[cid], "roles": client_roles}
        for cid, client_roles in roles.items()
    ]
    admin = {"username": "admin", "password": ADMIN_PASSWORD}
    path.write_text(json.dumps({"admin": admin, "clients": clients}))
    return path


def credentials_for(home: Path, roles: Mapping[str, list[str]]) -> tuple[dict[str, str], Path]:
    """A fresh random secret per client of ``roles``, written with them to
    ``home/credentials.json``: (secrets by client id, the file's path)."""
    secrets = {cid: uuid.uuid4().hex for cid in roles}
    return secrets, write_credentials_file(home, roles, secrets)


def new_home(
    tmp_path_factory: pytest.TempPathFactory, name: str, roles: Mapping[str, list[str]]
) -> tuple[Path, dict[str, str], Path]:
    """A fresh gateway home with a credentials file for ``roles``: (home, secrets, file)."""
    home = tmp_path_factory.mktemp(name)
    secrets, creds = credentials_for(home, roles)
    return home, secrets, creds


@dataclass(frozen=True)
class Backends:
    """The real Redis, registry and Kafka (Tansu) every test gateway runs against."""

    redis_url: str
    registry_url: str
    kafka_bootstrap: str


@dataclass
class StartedGateway:
    app: GatewayApp
    server: ServerThread
    settings: GatewaySettings

    @property
    def url(self) -> str:
        return self.server.url


def start_gateway(
    backends: Backends, home: Path, creds: Path, *, issuer: str | None = None, **extra: Any
) -> StartedGateway:
    """Build and serve a gateway on a free port; ``issuer`` defaults to its own URL and
    ``extra`` holds further GatewaySettings fields. The caller stops ``.server``."""
    port = free_port()
    settings = GatewaySettings(
        home=home,
        redis_url=backends.redis_url,
        registry_url=backends.registry_url,
        kafka_bootstrap=backends.kafka_bootstrap,
        token_issuer=issuer or f"http://127.0.0.1:{port}",
        gateway_port=port,
        gateway_credentials_file=creds,
        **extra,
    )
    app = build_app(settings)
    server = ServerThread(app, port)
    server.start()
    return StartedGateway(app, server, settings)


def start_gateways(
    backends: Backends, home: Path, creds: Path, *, issuer: str, **extra: Any
) -> tuple[StartedGateway, StartedGateway]:
    """Two gateways sharing one home (keys, SQL database) and Redis; ``issuer`` is shared
    so that either accepts the other's tokens. The caller stops both servers."""
    first = start_gateway(backends, home, creds, issuer=issuer, **extra)
    return first, start_gateway(backends, home, creds, issuer=issuer, **extra)


def client_token(url: str, client_id: str, secret: str) -> str:
    """An access token for a client (client-credentials grant) from the gateway at ``url``."""
    resp = httpx.post(
        url + "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def sign_in(url: str, username: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, Any]:
    """The token answer of a password grant at the gateway at ``url``."""
    resp = httpx.post(
        url + "/oauth/token",
        data={"grant_type": "password", "username": username, "password": password},
    )
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    return body


def admin_token(url: str) -> str:
    """An access token for the admin user from the gateway at ``url``."""
    return str(sign_in(url)["access_token"])


async def audit_events(bootstrap: str, target: str, *, count: int = 1) -> list[dict[str, Any]]:
    """The audit events about ``target`` on Kafka (read from the beginning, for up to 15 s
    until ``count`` are found), oldest first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(found) < count:
            partitions = consumer.partitions_for_topic(TOPIC_AUDIT)
            if not partitions:
                await consumer.topics()
                await asyncio.sleep(0.2)
                continue
            tps = [TopicPartition(TOPIC_AUDIT, p) for p in partitions]
            if not consumer.assignment():
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
            for records in (await consumer.getmany(timeout_ms=200)).values():
                events = [json.loads(r.value) for r in records]
                found += [e for e in events if e["target"] == target]
    finally:
        await consumer.stop()
    return sorted(found, key=lambda e: e["ts"])


def wait_until(condition: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout_s``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.01)
    return time.monotonic() - start


class Clock:
    """A fake clock: ``now`` moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now
