"""Test support shared by the services' suites: a real RSA key served as a JWKS.

Nothing here is a fake: tokens are really signed, the key set is served over a
real HTTP socket, and services verify through :class:`aimp_core.auth.JwksVerifier`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from aimp_core.auth import AUDIENCE, JwksVerifier


@dataclass
class KeyServer:
    """An RSA key whose public half is served at ``jwks_url``; signs test tokens."""

    key: RSAKey
    jwks_url: str
    issuer: str

    def token(self, roles: list[str], *, expires_in_s: float = 300, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "sub": "tester",
            "client_id": "tester",
            "aud": AUDIENCE,
            "iss": self.issuer,
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
        return JwksVerifier(self.jwks_url, issuer=self.issuer, timeout_s=2.0)


@contextmanager
def serve_jwks(issuer: str) -> Iterator[KeyServer]:
    """A fresh RSA key and a real HTTP server answering its JWKS, for one block."""
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
        yield KeyServer(key, f"http://127.0.0.1:{server.server_address[1]}/jwks.json", issuer)
    finally:
        server.shutdown()
        server.server_close()
