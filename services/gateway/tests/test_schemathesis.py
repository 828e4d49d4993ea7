"""schemathesis against the gateway's own OpenAPI (OAuth, admin, discovery): never a 5xx.

A private gateway (real Redis, registry and Tansu; SQLite under tmp) so generated admin
changes cannot disturb the session gateway the other tests share. Admin routes are
called with an admin token, so they are exercised past the authorization check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from aimp_core.net import free_port, wait_http_ok
from aimp_gateway.app import build_app
from aimp_gateway.settings import GatewaySettings

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "schemathesis-admin-" + uuid.uuid4().hex[:8]
#: Examples per operation: ~25 operations x 8 keeps the whole file well under 60 s.
EXAMPLES = 8


@dataclass
class Target:
    url: str
    admin: dict[str, str]


#: The Redis database (of 16) this module keeps to itself.
SCHEMATHESIS_REDIS_DB = 13


def _own_database(url: str, db: int) -> str:
    """``url`` pointing at database ``db``, emptied."""
    base = url.rstrip("/")
    if base.rsplit("/", 1)[-1].isdigit():
        base = base.rsplit("/", 1)[0]
    own = f"{base}/{db}"
    client = redis.Redis.from_url(own)
    client.flushdb()
    client.close()
    return own


@pytest.fixture(scope="module")
def target(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    registry_url: str,
    kafka_bootstrap: str,
) -> Iterator[Target]:
    """A gateway of its own, serving, with an admin token.

    It and its throttle service use a Redis database of their own (emptied first): the
    random policies and limits schemathesis stores must not reach other tests' gateways.
    """
    home: Path = tmp_path_factory.mktemp("schemathesis-gateway")
    redis_url = _own_database(redis_url, SCHEMATHESIS_REDIS_DB)
    creds = home / "credentials.json"
    creds.write_text(json.dumps({"admin": {"username": "admin", "password": ADMIN_PASSWORD}}))
    port, throttle_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{port}"
    # The real throttle service, so that /admin/throttle/... is forwarded somewhere.
    throttle_env = {
        **os.environ,
        "AIMP_HOME": str(home / "throttle"),
        "AIMP_THROTTLE_PORT": str(throttle_port),
        "AIMP_REDIS_URL": redis_url,
        "AIMP_REGISTRY_URL": registry_url,
        "AIMP_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "AIMP_TOKEN_ISSUER": issuer,
        "AIMP_JWKS_URL": f"{issuer}/.well-known/jwks.json",
        "AIMP_LOG_LEVEL": "WARNING",
    }
    throttle_log = (home / "throttle.log").open("wb")
    throttle = subprocess.Popen(
        [str(Path(sys.executable).parent / "aimp-throttle")],
        env=throttle_env, stdout=throttle_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    app = build_app(
        GatewaySettings(
            home=home,
            redis_url=redis_url,
            registry_url=registry_url,
            kafka_bootstrap=kafka_bootstrap,
            token_issuer=issuer,
            gateway_port=port,
            gateway_credentials_file=creds,
            gateway_registry_start_wait_s=0.0,
            gateway_throttle_url=f"http://127.0.0.1:{throttle_port}",
        )
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http="httptools", lifespan="on",
        log_config=None, access_log=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(url + "/healthz", timeout_s=20)
        wait_http_ok(f"http://127.0.0.1:{throttle_port}/readyz", timeout_s=30)
        resp = httpx.post(
            url + "/oauth/token",
            data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        )
        resp.raise_for_status()
        yield Target(url, {"Authorization": f"Bearer {resp.json()['access_token']}"})
    finally:
        server.should_exit = True
        thread.join(20)
        throttle.terminate()  # only the process this fixture started
        throttle.wait(15)
        throttle_log.close()


def test_no_operation_answers_5xx(target: Target) -> None:
    """Whatever schemathesis sends to any operation, the gateway never answers with a 5xx."""
    schema = schemathesis.openapi.from_url(target.url + "/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises here, as it should
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            headers = {"Authorization": target.admin["Authorization"], **dict(case.headers or {})}
            case.call_and_validate(
                base_url=target.url, headers=headers, checks=[not_a_server_error], timeout=10
            )

        try:
            call()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup
            failures.append(f"{operation.method.upper()} {operation.path}: {exc!r}")
    assert operations >= 10, "the gateway's OpenAPI lists fewer operations than expected"
    assert not failures, "\n\n".join(failures)
