"""Latency of one iris inference: direct to Triton, through the sidecar, through the gateway.

Run against a running local stack (`make up`), never as part of the tests:

    uv run python bench/latency.py [--calls 1000]

Each path gets the same tritonclient call, sequentially, after a warm-up; the
script prints median and p99 per path and the gateway's overhead relative to
the direct call, with the machine noted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import httpx
import numpy as np
import tritonclient.http as triton_http
from machine import cpu_model

from aimp_cli.home import Home
from aimp_cli.platform import admin_token, client_token
from aimp_cli.stack import Ports
from aimp_core.settings import CoreSettings


def measure(call: Callable[[], object], calls: int, warmup: int = 50) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * 0.99 + 0.999999) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    home = Home(CoreSettings().home)
    ports = Ports.from_env()
    creds = json.loads(home.credentials.read_text())
    gateway = f"http://127.0.0.1:{ports.gateway}"
    deploy = f"http://127.0.0.1:{ports.deploy_control}"
    admin = admin_token(gateway, creds)
    token = client_token(gateway, creds["clients"][0])
    pods = httpx.get(
        f"{deploy}/v1/pods", headers={"Authorization": f"Bearer {admin}"}, timeout=10
    ).json()["pods"]
    pod = next(p for p in pods if p["deployment"] == "iris" and p["state"] == "RUNNING")

    x = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float64)
    inp = triton_http.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    headers = {"Authorization": f"Bearer {token}"}
    paths = {
        "direct to Triton": pod["upstream_url"],
        "through the sidecar": pod["url"],
        "through the gateway": gateway,
    }
    results: dict[str, list[float]] = {}
    for label, url in paths.items():
        client = triton_http.InferenceServerClient(url.removeprefix("http://"))
        results[label] = measure(
            lambda c=client: c.infer("iris", [inp], headers=headers), args.calls
        )
        client.close()

    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}")
    print(f"{args.calls} sequential tritonclient.http infer calls per path (after 50 warm-up)")
    print(f"{'path':22} {'median ms':>10} {'p99 ms':>8} {'median vs direct':>17}")
    direct = statistics.median(results["direct to Triton"])
    for label, samples in results.items():
        med = statistics.median(samples)
        print(f"{label:22} {med:10.2f} {p99(samples):8.2f} {med / direct:16.2f}x")
    gw = statistics.median(results["through the gateway"])
    print(f"gateway + sidecar add {gw - direct:.2f} ms at the median")


if __name__ == "__main__":
    main()
