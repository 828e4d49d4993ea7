"""Fixtures for the deploy-control tests: a real RSA key set served over HTTP, token minting,
and the Kubernetes API stand-in."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey

from aimp_core.net import free_port

from .k8s_standin import StandIn

ISSUER = "http://issuer.test"


@dataclass(frozen=True)
class KeyServer:
    jwks_url: str
    issuer: str
    mint: Callable[..., str]


@pytest.fixture(scope="session")
def dc_keys() -> Iterator[KeyServer]:
    """An RS256 key whose public half is served as a JWKS on a free port (a real HTTP server)."""
    key = RSAKey.generate_key(2048, parameters={"kid": f"k-{uuid.uuid4().hex[:8]}"})
    body = json.dumps({"keys": [key.as_dict(private=False)]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def mint(roles: list[str], *, ttl_s: float = 300, issuer: str = ISSUER) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": "aimp",
            "sub": "test-client",
            "client_id": "test-client",
            "roles": roles,
            "iat": now,
            "exp": now + int(ttl_s),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    yield KeyServer(f"http://127.0.0.1:{server.server_port}/jwks.json", ISSUER, mint)
    server.shutdown()


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    """The Kubernetes API stand-in (k8s_standin.py) served on a free port; ``url`` is set."""
    s = StandIn()
    runner = web.AppRunner(s.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    s.url = f"http://127.0.0.1:{port}"
    yield s
    await runner.cleanup()
