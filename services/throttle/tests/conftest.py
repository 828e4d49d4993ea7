"""Fixtures for the throttle tests: a real signing key served as JWKS, a Redis database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from aimp_core.auth import AUDIENCE, JwksVerifier

ISSUER = "http://issuer.test"


@dataclass
class KeyServer:
    """An RSA key whose public half is served at ``jwks_url``; signs test tokens."""

    key: RSAKey
    jwks_url: str

    def token(self, roles: list[str], *, expires_in_s: float = 300, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "sub": "tester",
            "client_id": "tester",
            "aud": AUDIENCE,
            "iss": ISSUER,
            "iat": now,
            "exp": now + int(expires_in_s),
            "jti": uuid.uuid4().hex,
            "roles": roles,
            **claims,
        }
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, body, self.key)

    def headers(self, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(list(roles))}"}

    def verifier(self) -> JwksVerifier:
        return JwksVerifier(self.jwks_url, issuer=ISSUER, timeout_s=2.0)


@pytest.fixture(scope="session")
def throttle_keys() -> Iterator[KeyServer]:
    """A fresh RSA key and a real HTTP server answering its JWKS."""
    key = RSAKey.generate_key(
        2048, parameters={"kid": f"k-{uuid.uuid4().hex[:8]}", "alg": "RS256"}, private=True
    )
    body = json.dumps(KeySet([key]).as_dict(private=False)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield KeyServer(key, f"http://127.0.0.1:{server.server_address[1]}/jwks.json")
    finally:
        server.shutdown()
        server.server_close()


def other_db(url: str) -> str:
    """The same Redis server, another database number (never 0 and never ``url``'s own)."""
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) % 15) + 1}"


@pytest.fixture(scope="session")
def throttle_redis_url(redis_url: str) -> str:
    """A Redis database of the throttle tests' own: the rules they publish reach no gateway
    that other tests run against the session's database."""
    return other_db(redis_url)


@pytest.fixture
def sync_redis(throttle_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(throttle_redis_url)
    yield client
    client.close()
