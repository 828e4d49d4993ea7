"""Cold start: from "scale to 1" to the first successful call through the gateway, by phase.

Never part of the tests. Starts the whole local stack with `aimp up` under a temporary
AIMP_HOME on free ports, publishes a model with `aimp deploy` (uploaded to the model
store, so its replicas load a copy from the local model cache), scales it to 0, then
``--tries`` times: PUT .../scale {replicas: 1}, call ``/v2/models/NAME/infer`` through
the gateway every 10 ms until one succeeds, read the pod's ``cold_start`` from
deploy-control, scale back to 0. It does this twice:

- warm cache: the model file is already in ``$AIMP_HOME/cache/models/<sha256>/``;
- cold cache: that directory is deleted before each scale, so deploy-control fetches the
  file from the model store again (SHA-256 checked). The store is a local directory
  unless ``--store-url`` names another fsspec store (e.g. s3://bucket/prefix with s3fs
  installed); with the default one, "cold" costs a local copy, not a download.

Phases (p50 and max over the tries, ms):
  prepare        scale call -> spawn requested (store fetch into the cache, bookkeeping)
  process start  spawn requested -> the server process exists
  model load     process -> the server answers ready with the model loaded (Triton ~3 s)
  registration   model loaded -> its sidecar is UP in the registry
  first call     registered -> the first successful call through the gateway returned
  total          scale call -> that call returned

deploy-control observes the marks by polling every 50 ms (its cold-start probe), so each
phase boundary is late by up to that; "first call" can be slightly negative when the
gateway routed to the pod before deploy-control's probe saw it registered.

    uv run python bench/coldstart.py [--tries 5] [--model FILE] [--store-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from machine import describe

from aimp_core.net import free_port

AIMP = str(Path(sys.executable).parent / "aimp")
NAME = "coldbench"
INFER_BODY = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
}
PHASES = ("prepare", "process start", "model load", "registration", "first call", "total")


def wait_for(
    what: str, probe: Callable[[], Any], timeout_s: float, interval_s: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval_s)
    raise SystemExit(f"timed out after {timeout_s:g} s waiting for {what}")


class Bench:
    def __init__(self, home: Path, env: dict[str, str], ports: dict[str, int]) -> None:
        self.home, self.env, self.ports = home, env, ports
        self.gateway = f"http://127.0.0.1:{ports['gateway']}"
        self.dc = httpx.Client(base_url=f"http://127.0.0.1:{ports['deploy_control']}", timeout=60)
        self.gw = httpx.Client(base_url=self.gateway, timeout=10)
        creds = json.loads((home / "credentials.json").read_text())
        admin, client = creds["admin"], creds["clients"][0]
        self.admin = self._token(
            {"grant_type": "password", "username": admin["username"], "password": admin["password"]}
        )
        self.invoker = self._token(
            {"grant_type": "client_credentials"}, (client["client_id"], client["client_secret"])
        )

    def _token(self, form: dict[str, str], auth: tuple[str, str] | None = None) -> dict[str, str]:
        resp = self.gw.post("/oauth/token", data=form, auth=auth or httpx.USE_CLIENT_DEFAULT)
        resp.raise_for_status()
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def pods(self) -> list[dict[str, Any]]:
        resp = self.dc.get(f"/v1/deployments/{NAME}", headers=self.admin)
        resp.raise_for_status()
        return list(resp.json()["pods"])

    def scale(self, replicas: int) -> None:
        resp = self.dc.put(
            f"/v1/deployments/{NAME}/scale", json={"replicas": replicas}, headers=self.admin
        )
        if resp.status_code != 200:
            raise SystemExit(f"scale to {replicas} failed: {resp.status_code} {resp.text}")

    def cache_dir(self) -> Path:
        resp = self.dc.get(f"/v1/models/{NAME}", headers=self.admin)
        resp.raise_for_status()
        sha = str(resp.json()["versions"][-1]["sha256"])
        return self.home / "cache" / "models" / sha

    def once(self, *, cold_cache: bool) -> dict[str, float]:
        self.scale(0)
        wait_for("the replicas to stop", lambda: not self.pods(), 120)
        if cold_cache:
            shutil.rmtree(self.cache_dir(), ignore_errors=True)
        t0 = time.time()
        self.scale(1)
        while True:
            try:
                resp = self.gw.post(
                    f"/v2/models/{NAME}/infer", json=INFER_BODY, headers=self.invoker
                )
                if resp.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() - t0 > 180:
                raise SystemExit(f"no successful call within 180 s; pods: {self.pods()}")
            time.sleep(0.01)
        t_first = time.time()

        def done() -> dict[str, Any] | None:
            cold = self.pods()[0].get("cold_start")
            return cold if cold and cold["state"] != "in_progress" else None

        cold = wait_for("deploy-control to record the cold start", done, 60)
        if cold["state"] != "done":
            raise SystemExit(f"the cold start ended {cold['state']}: {cold['reason']}")
        requested = datetime.fromisoformat(cold["requested_at"]).timestamp()
        registered = requested + cold["total_ms"] / 1000.0
        return {
            "prepare": (requested - t0) * 1000.0,
            "process start": cold["process_start_ms"],
            "model load": cold["model_load_ms"],
            "registration": cold["registration_ms"],
            "first call": (t_first - registered) * 1000.0,
            "total": (t_first - t0) * 1000.0,
        }


def start_stack(home: Path, store_url: str | None) -> tuple[dict[str, str], dict[str, int]]:
    ports = {
        name: free_port()
        for name in ("gateway", "registry", "deploy_control", "throttle", "stats", "kafka")
    }
    env = {**os.environ, "AIMP_HOME": str(home)}
    env.update({f"AIMP_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    if store_url:
        env["AIMP_DEPLOY_CONTROL_MODEL_STORE_URL"] = store_url
    print(f"starting the stack (aimp up) under {home} ...", flush=True)
    up = subprocess.run([AIMP, "up"], env=env, capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        raise SystemExit(f"aimp up failed:\n{up.stdout}\n{up.stderr}")
    return env, ports


def report(results: dict[str, list[dict[str, float]]]) -> None:
    modes = list(results)
    head = f"{'phase':<14}" + "".join(f"{m + ' p50':>18}{m + ' max':>18}" for m in modes)
    print(head)
    for phase in PHASES:
        row = f"{phase:<14}"
        for mode in modes:
            values = [r[phase] for r in results[mode]]
            row += f"{statistics.median(values):>18.1f}{max(values):>18.1f}"
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=5, help="scale-ups per mode (default 5)")
    parser.add_argument("--model", type=Path, help="joblib model (default: the demo iris model)")
    parser.add_argument("--store-url", help="AIMP_DEPLOY_CONTROL_MODEL_STORE_URL for the stack")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()

    print(f"machine: {describe()}")
    home = Path(tempfile.mkdtemp(prefix="aimp-coldstart-")) / "aimp-home"
    env, ports = start_stack(home, args.store_url)
    try:
        model = args.model or next((home / "models" / "iris").rglob("model.joblib"))
        deploy = subprocess.run(
            [AIMP, "deploy", str(model), "--name", NAME, "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if deploy.returncode != 0:
            raise SystemExit(f"aimp deploy failed:\n{deploy.stdout}\n{deploy.stderr}")
        bench = Bench(home, env, ports)
        print(
            f"model {model} ({model.stat().st_size} bytes), store {args.store_url or 'local dir'}"
        )
        results: dict[str, list[dict[str, float]]] = {"warm cache": [], "cold cache": []}
        for i in range(args.tries):
            for mode in results:  # interleaved, so a change in machine load hits both
                sample = bench.once(cold_cache=mode == "cold cache")
                results[mode].append(sample)
                print(f"  try {i + 1} {mode}: total {sample['total']:.0f} ms", flush=True)
        bench.scale(0)
        print(f"\ncold start of one Triton replica, ms over {args.tries} tries per mode")
        report(results)
    finally:
        if not args.keep:
            subprocess.run([AIMP, "down"], env=env, capture_output=True, timeout=300)
            for _ in range(3):  # a process stopping late may still write its log
                shutil.rmtree(home.parent, ignore_errors=True)
                if not home.parent.exists():
                    break
                time.sleep(1)


if __name__ == "__main__":
    main()
