"""Fixtures for the throttle tests: a private Redis, the throttle service, four gateways."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from throttle_stack import Stack, start_stack


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, registry_url: str, kafka_bootstrap: str
) -> Iterator[Stack]:
    """Real processes: redis-server, aimp-throttle, 4 x aimp-gateway, an upstream."""
    running = start_stack(
        tmp_path_factory.mktemp("throttle-stack"),
        registry_url=registry_url,
        kafka_bootstrap=kafka_bootstrap,
        gateways=4,
        # Short leases so a killed gateway's slots come free within the test.
        gateway_env={"AIMP_GATEWAY_THROTTLE_LEASE_TTL_S": "2"},
    )
    yield running
    running.stop()
