"""Fixtures for the routing tests: a real gateway process, pods behind sidecars, the model."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from routing_stack import Gateway, PodFactory, export_iris, pod_runtime, start_gateway

#: The routing gateway's first ejection time (seconds).
BASE_EJECTION_S = 2.0


@pytest.fixture(scope="session")
def iris_model_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris demo model exported for the native pods."""
    if pod_runtime() is None:
        pytest.skip("no native pod built (inference/cpp/build.sh or inference/java/build.sh)")
    return export_iris(tmp_path_factory.mktemp("iris-model"))


@pytest.fixture(scope="module")
def routing_gateway(
    tmp_path_factory: pytest.TempPathFactory,
    registry_url: str,
    redis_url: str,
    kafka_bootstrap: str,
) -> Iterator[Gateway]:
    """The real aimp-gateway process following the real registry (x-aimp-instance on).

    Ejections last 2 s at first (default 5 s), so that a test sees an ejection end
    and its probe within a few seconds.
    """
    gateway = start_gateway(
        tmp_path_factory.mktemp("routing-gateway"),
        registry_url=registry_url,
        redis_url=redis_url,
        kafka_bootstrap=kafka_bootstrap,
        AIMP_GATEWAY_OUTLIER_BASE_EJECTION_S=str(BASE_EJECTION_S),
    )
    yield gateway
    gateway.stop()


@pytest.fixture
def pods(
    routing_gateway: Gateway, registry_url: str, iris_model_json: Path, tmp_path: Path
) -> Iterator[PodFactory]:
    """Starts pods behind real sidecars; kills whatever is left at the end of the test."""
    factory = PodFactory(iris_model_json, registry_url, routing_gateway, tmp_path / "pods")
    yield factory
    factory.stop_all()
