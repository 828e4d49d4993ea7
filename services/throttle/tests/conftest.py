"""Fixtures for the throttle tests: a real signing key served as JWKS, a Redis database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from aimp_core.testing import KeyServer, serve_jwks

ISSUER = "http://issuer.test"


@pytest.fixture(scope="session")
def throttle_keys() -> Iterator[KeyServer]:
    """A fresh RSA key and a real HTTP server answering its JWKS."""
    with serve_jwks(ISSUER) as keys:
        yield keys


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
