"""`aimp backflow export` (the real console script) against a real stats server over TCP."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from aimp_core.net import free_port, wait_http_ok
from aimp_stats.app import create_app
from aimp_stats.backflow_files import PartitionWriter
from aimp_stats.backflow_sink import backflow_root
from aimp_stats.settings import StatsSettings

from .conftest import KeyServer

DAY = 1_700_000_000.0  # 2023-11-14T22:13:20Z
AIMP = str(Path(sys.executable).parent / "aimp")


@pytest.fixture
def stats_url(tmp_path: Path, redis_url: str, stats_keys: KeyServer) -> Iterator[str]:
    """A stats server (uvicorn, in a thread) whose backflow directory holds 3 days of calls."""
    settings = StatsSettings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 's.db'}",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        redis_url=redis_url,
    )
    writer = PartitionWriter(
        backflow_root(settings), part_max_bytes=4096, service_max_bytes=1 << 30
    )
    writer.write(
        [
            {"request_id": f"r{i}", "ts": DAY + i * 600, "service": "iris", "pad": "x" * 50}
            for i in range(400)
        ]
    )
    app = create_app(settings, verifier=stats_keys.verifier(), consume=False)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout_s=20)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(20)


def export(stats_url: str, token: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIMP, "backflow", "export", "--stats-url", stats_url, "--token", token, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_export_downloads_exactly_the_range(
    stats_url: str, stats_keys: KeyServer, tmp_path: Path
) -> None:
    """The file holds exactly the records with since <= ts < until, across days and parts."""
    out = tmp_path / "iris.jsonl.gz"
    since, until = DAY + 600 * 10, "2023-11-16T12:00:00Z"
    done = export(
        stats_url,
        stats_keys.token(["operator"]),
        "--service",
        "iris",
        "--since",
        str(since),
        "--until",
        until,
        "-o",
        str(out),
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    with gzip.open(out, "rt") as f:
        ids = [json.loads(line)["request_id"] for line in f]
    until_s = 1_700_136_000.0  # 2023-11-16T12:00:00Z
    expected = [f"r{i}" for i in range(400) if since <= DAY + i * 600 < until_s]
    assert ids == expected and len(expected) > 200
    assert f"wrote {len(expected)} records" in done.stdout
    assert not out.with_name(out.name + ".part").exists()


def test_export_without_the_role_fails_and_leaves_no_file(
    stats_url: str, stats_keys: KeyServer, tmp_path: Path
) -> None:
    """An invoker token gets the server's reason, a non-zero exit and no output file."""
    out = tmp_path / "x.gz"
    done = export(
        stats_url, stats_keys.token(["invoker"]), "--service", "iris", "-o", str(out), "--quiet"
    )
    assert done.returncode != 0
    assert "HTTP 403" in done.stderr and "reading usage" in done.stderr
    assert not out.exists() and not out.with_name("x.gz.part").exists()
