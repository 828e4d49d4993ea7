"""The load-test runner against a real HTTP server with a latency knee (tests/knee_server.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from aimp_core.errors import Conflict
from aimp_core.net import free_port, wait_http_ok
from aimp_deploy_control.backend import PodInfo
from aimp_deploy_control.lifecycle import PodState
from aimp_deploy_control.loadtest import SearchConfig, Step, StopReason, recommend, verdict
from aimp_deploy_control.loadtest_runner import (
    LoadTestFailed,
    StepRunner,
    prepare,
    search,
    server_url,
)

KNEE_SERVER = Path(__file__).with_name("knee_server.py")


def start_server(*flags: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(KNEE_SERVER), "--http-port", str(port), "--name", "m", *flags]
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(url + "/v2/health/ready", timeout_s=20)
    return proc, url


@pytest.fixture(scope="module")
def knee_url() -> Iterator[str]:
    """40 ms per call up to 3 in flight, 400 ms beyond: the knee is near 75-100 calls/s."""
    proc, url = start_server("--base-ms", "40", "--slow-ms", "400", "--knee", "3")
    yield url
    proc.terminate()
    proc.wait(10)


async def test_search_finds_the_knee_of_a_real_server(knee_url: str) -> None:
    """Ramping and bisecting against the server ends below its knee with passing steps
    below and the failing ones above it, progress reported before every step."""
    cfg = SearchConfig(latency_target_ms=150, max_rps=400, start_rps=20, min_rps=2, resolution=0.15)
    seen: list[tuple[int, float, int]] = []

    async def on_step(number: int, rate: float, steps: list[Step]) -> None:
        seen.append((number, rate, len(steps)))

    async with aiohttp.ClientSession() as session:
        infer, body = await prepare(session, knee_url, "m", timeout_s=5)
        runner = StepRunner(session, infer, body, call_timeout_s=5, max_in_flight=200)
        steps, reason = await search(cfg, lambda rate: runner.run(rate, 0.6), on_step)
    assert reason is StopReason.CONVERGED
    assert [(n, k) for n, _r, k in seen] == [(i + 1, i) for i in range(len(steps))]
    rec = recommend(cfg, steps, 0.7)
    assert rec is not None
    # 3 in flight at 40 ms is 75 calls/s; scheduling jitter on a busy machine lowers it.
    assert 20 <= rec.max_rate_rps <= 110, [(s.offered_rps, s.p99_ms) for s in steps]
    failed = [s for s in steps if not verdict(cfg, s).passed]
    assert failed and all(s.offered_rps > rec.max_rate_rps for s in failed)
    # Beyond the knee calls queue behind 400 ms ones: the p99 shows it.
    assert all(s.p99_ms is None or s.p99_ms > 150 for s in steps if s.offered_rps >= 120)
    assert rec.recommended_concurrency >= 1
    assert rec.autoscaling_target_rps == pytest.approx(0.7 * rec.max_rate_rps)


async def test_failed_and_timed_out_calls_count_as_errors() -> None:
    """500 answers and calls past the call timeout are errors, not latencies."""
    proc, url = start_server("--base-ms", "5", "--fail-every", "4")
    try:
        async with aiohttp.ClientSession() as session:
            infer, body = await prepare(session, url, "m", timeout_s=5)
            failing = await StepRunner(
                session, infer, body, call_timeout_s=5, max_in_flight=50
            ).run(40, 0.5)
            assert failing.calls == 20 and failing.error_rate == pytest.approx(0.25, abs=0.06)
            timing_out = await StepRunner(
                session, infer, body, call_timeout_s=0.001, max_in_flight=50
            ).run(20, 0.25)
            assert timing_out.error_rate == 1.0 and timing_out.p99_ms is None
    finally:
        proc.terminate()
        proc.wait(10)


async def test_prepare_says_why_a_server_cannot_be_load_tested(knee_url: str) -> None:
    """An unknown model (no metadata) or no server at all fails with the URL it called."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(LoadTestFailed, match=r"/v2/models/ghost answered 404"):
            await prepare(session, knee_url, "ghost", timeout_s=5)
        with pytest.raises(
            LoadTestFailed, match=re.escape("cannot call http://127.0.0.1:1/v2/models/m")
        ):
            await prepare(session, "http://127.0.0.1:1", "m", timeout_s=2)


def pod(url: str, upstream: str) -> PodInfo:
    return PodInfo("m-0", "m", 0, "triton", PodState.RUNNING, url, upstream, 0, None)


def test_server_url_reaches_the_server_beside_a_remote_sidecar() -> None:
    """A local pod's server is its upstream URL; a Kubernetes pod's loopback upstream is
    reached at the pod's IP on the server's port; a pod without address is a 409."""
    assert server_url(pod("http://127.0.0.1:9001", "http://127.0.0.1:9000")) == (
        "http://127.0.0.1:9000"
    )
    assert server_url(pod("http://10.1.2.3:8080", "http://127.0.0.1:8000")) == (
        "http://10.1.2.3:8000"
    )
    with pytest.raises(Conflict, match="no address yet"):
        server_url(pod("", ""))
