"""Pod alarms: instances from the real registry, their /metrics from real HTTP servers."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

from aimp_core.net import free_port
from aimp_core.registry_client import EurekaClient, instance_document
from aimp_stats.alarm_app import Alarms
from aimp_stats.alarm_sources import META_METRICS_URL, parse_sample
from aimp_stats.app import create_app
from aimp_stats.settings import StatsSettings

from .conftest import KeyServer

pytestmark = pytest.mark.integration

#: What Triton's metrics endpoint says about two GPUs (names and units as Triton's).
TRITON_GPU_TEXT = """\
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-a"} 0.97
nv_gpu_utilization{gpu_uuid="GPU-b"} 0.10
# HELP nv_gpu_memory_total_bytes GPU total memory, in bytes
# TYPE nv_gpu_memory_total_bytes gauge
nv_gpu_memory_total_bytes{gpu_uuid="GPU-a"} 8000000000
nv_gpu_memory_total_bytes{gpu_uuid="GPU-b"} 8000000000
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-a"} 6000000000
nv_gpu_memory_used_bytes{gpu_uuid="GPU-b"} 2000000000
"""


def process_text() -> str:
    """This process's real process metrics, as every aimp service exposes them."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return generate_latest(registry).decode()


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[str]:
    """A real HTTP server: /cpu-pod serves process metrics, /gpu-pod adds Triton GPU ones."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            text = process_text() + (TRITON_GPU_TEXT if self.path == "/gpu-pod" else "")
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def alarms(
    tmp_path: Path, registry_url: str, redis_url: str, stats_keys: KeyServer
) -> AsyncIterator[tuple[FastAPI, Alarms]]:
    settings = StatsSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 's.db'}",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        redis_url=redis_url,
        registry_url=registry_url,
    )
    app = create_app(settings, verifier=stats_keys.verifier(), consume=False)
    async with app.router.lifespan_context(app):
        yield app, app.state.alarms


def test_parse_sample_reads_process_and_triton_gpu_metrics() -> None:
    """Process CPU and memory and per-GPU Triton metrics are read; absent ones stay None."""
    sample = parse_sample(process_text() + TRITON_GPU_TEXT, "p", "s", 1.0)
    assert sample.cpu_seconds is not None and sample.resident_bytes is not None
    assert sorted(sample.gpu_utilization) == [0.10, 0.97]
    assert (sample.gpu_memory_used_bytes, sample.gpu_memory_total_bytes) == (8e9, 16e9)
    bare = parse_sample(process_text(), "p", "s", 1.0)
    assert bare.gpu_utilization == () and bare.gpu_memory_total_bytes is None


async def test_pod_rules_fire_from_registry_instances(
    alarms: tuple[FastAPI, Alarms],
    registry_url: str,
    metrics_server: str,
    stats_keys: KeyServer,
) -> None:
    """Memory and GPU rules fire on the pods that expose those metrics, and only there."""
    app, parts = alarms
    service = f"pods-{uuid.uuid4().hex[:6]}"
    registry = EurekaClient(registry_url, timeout_s=5)
    for pod in ("cpu-pod", "gpu-pod"):
        await registry.register(
            instance_document(
                app=service.upper(),
                instance_id=f"{service}-{pod}",
                ip="127.0.0.1",
                port=free_port(),
                metadata={META_METRICS_URL: f"{metrics_server}/{pod}"},
            )
        )
    await registry.aclose()
    op = stats_keys.headers("operator")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stats") as client:
        for metric, threshold in (("pod_memory", 1), ("gpu_util", 90), ("pod_cpu", 1e9)):
            body = {
                "name": metric,
                "metric": metric,
                "service": service,
                "threshold": threshold,
                "hold_minutes": 0,
            }
            assert (await client.post("/v1/alarms/rules", json=body, headers=op)).status_code == 201
        first = await parts.evaluator.evaluate_once()
        await asyncio.sleep(0.05)
        second = await parts.evaluator.evaluate_once()  # CPU now has two scrapes: a rate
        fired = sorted((e["rule_name"], e["pod"], e["service"]) for e in first + second)
        assert fired == [
            ("gpu_util", f"{service}-gpu-pod", service),
            ("pod_memory", f"{service}-cpu-pod", service),
            ("pod_memory", f"{service}-gpu-pod", service),
        ]
        gpu = next(e for e in first if e["rule_name"] == "gpu_util")
        assert gpu["value"] == pytest.approx(97.0)
        active = (await client.get("/v1/alarms/active", headers=op)).json()["alerts"]
        assert len(active) == 3
