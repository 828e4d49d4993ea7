"""Every call counted through a broker outage: the whole local stack, as a user runs it.

1. ``aimp up`` on free ports under a temporary AIMP_HOME (Redis, Tansu, registry,
   throttle, stats, gateway, deploy-control and the iris demo on Triton).
2. A paced, open-loop load of ``--rate`` inference calls per second through the
   gateway for ``--seconds``; the Kafka broker is killed (``kill -9``) after
   ``--kill-at`` seconds and started again ``--down`` seconds later by a second
   ``aimp up`` (which restarts dead components). Tansu keeps nothing across a
   restart, so the gateway's spool must replay what the broker never got or lost.
3. Waits until stats has counted every call the gateway answered (any status) for
   this run's client, and prints calls sent, answered, counted and how long after
   the broker's return the count became exact.

Run: ``uv run python bench/outage.py [--rate 200] [--seconds 70] [--kill-at 20] [--down 30]``.
Never part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from machine import cpu

from aimp_core.net import free_port

AIMP = str(Path(sys.executable).parent / "aimp")
IRIS_INPUT = {
    "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
}


def aimp(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([AIMP, *args], env=env, capture_output=True, text=True, timeout=400)
    if done.returncode != 0:
        raise SystemExit(f"aimp {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def token(gateway: str, form: dict[str, str], auth: tuple[str, str] | None = None) -> str:
    resp = httpx.post(f"{gateway}/oauth/token", data=form, auth=auth, timeout=10)
    resp.raise_for_status()
    return str(resp.json()["access_token"])


async def load(
    gateway: str, bearer: str, model: str, rate: int, seconds: float, on_tick: Any
) -> Counter[int]:
    """Open-loop calls at ``rate``/s; returns the count of each answered status (0 = none)."""
    statuses: Counter[int] = Counter()
    url = f"{gateway}/v2/models/{model}/infer"
    headers = {"authorization": f"Bearer {bearer}"}
    # aiohttp, not httpx: httpx's pool slows down quadratically with many waiting calls.
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            try:
                async with session.post(url, json=IRIS_INPUT, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
            except (aiohttp.ClientError, TimeoutError):
                statuses[0] += 1

        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            on_tick(elapsed)
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
    return statuses


def gateway_calls(gateway: str) -> int:
    """Data-plane calls the gateway has answered (its own /metrics: the ground truth)."""
    text = httpx.get(f"{gateway}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("aimp_http_requests_total{")
            and 'route="/v2/models/{model}/..."' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def counted(stats: str, bearer: str, client_id: str | None, since: float) -> int:
    """Calls stats has counted since ``since``: one client's, or every client's (None)."""
    params: dict[str, str | float] = {"since": since}
    if client_id is not None:
        params["client_id"] = client_id
    resp = httpx.get(
        f"{stats}/v1/usage",
        params=params,
        headers={"authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    resp.raise_for_status()
    return int(resp.json()["requests"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=70.0)
    parser.add_argument("--kill-at", type=float, default=20.0)
    parser.add_argument("--down", type=float, default=30.0)
    parser.add_argument("--model", default="iris")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="aimp-outage-")) / "home"
    ports = {n: free_port() for n in ("gateway", "registry", "deploy_control", "throttle")}
    ports.update({n: free_port() for n in ("stats", "kafka")})
    env = {**os.environ, "AIMP_HOME": str(home)}
    env.update({f"AIMP_{n.upper()}_PORT": str(p) for n, p in ports.items()})
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    stats = f"http://127.0.0.1:{ports['stats']}"
    print(f"machine: {cpu()}, Python {platform.python_version()}")
    print(f"aimp up under {home} ...", flush=True)
    started = time.monotonic()
    aimp(env, "up")
    print(f"stack up in {time.monotonic() - started:.1f} s", flush=True)
    try:
        creds = json.loads((home / "credentials.json").read_text())
        admin = creds["admin"]
        login = {"grant_type": "password", "username": admin["username"]}
        admin_bearer = token(gateway, {**login, "password": admin["password"]})
        # A client of its own, so only this run's calls are counted (not `aimp up`'s checks).
        client_id = f"outage-{os.getpid()}"
        created = httpx.post(
            f"{gateway}/admin/clients",
            json={"client_id": client_id, "roles": ["invoker"]},
            headers={"authorization": f"Bearer {admin_bearer}"},
            timeout=10,
        )
        created.raise_for_status()
        secret = created.json()["client_secret"]
        bearer = token(gateway, {"grant_type": "client_credentials"}, (client_id, secret))
        since = time.time() - 1
        before = counted(stats, admin_bearer, client_id, since)
        before_all = counted(stats, admin_bearer, None, since)
        handled_before = gateway_calls(gateway)
        phase = {"killed": False, "back": False, "back_at": 0.0}

        def on_tick(elapsed: float) -> None:
            if not phase["killed"] and elapsed >= args.kill_at:
                pid = json.loads((home / "run" / "kafka.pid").read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                phase["killed"] = True
                print(f"t={elapsed:5.1f} s  broker killed (pid {pid})", flush=True)
            elif phase["killed"] and not phase["back"] and elapsed >= args.kill_at + args.down:
                phase["back"] = True

                def restart() -> None:
                    # A second `aimp up` restarts dead components (off the load's thread).
                    aimp(env, "up")
                    phase["back_at"] = time.monotonic()
                    print("broker started again by `aimp up`", flush=True)

                threading.Thread(target=restart, daemon=True).start()
                print(f"t={elapsed:5.1f} s  `aimp up` to restart the broker", flush=True)

        statuses = asyncio.run(load(gateway, bearer, args.model, args.rate, args.seconds, on_tick))
        answered = sum(n for status, n in statuses.items() if status)
        print(f"calls sent {sum(statuses.values())}, answered {answered}: {dict(statuses)}")
        # Calls the client gave up on (status 0) may still have been served, and `aimp up`
        # checks the demo through the gateway too: the gateway's own count of every served
        # call is what stats must match, over all clients.
        time.sleep(2)  # let calls the client abandoned finish in the gateway
        handled = gateway_calls(gateway) - handled_before
        deadline = time.monotonic() + 120
        total = mine = 0
        while time.monotonic() < deadline:
            total = counted(stats, admin_bearer, None, since) - before_all
            mine = counted(stats, admin_bearer, client_id, since) - before
            if total >= handled:
                break
            time.sleep(0.5)
        back_at = float(phase["back_at"] or time.monotonic())
        verdict = "every call counted once" if total == handled else "MISMATCH"
        print(
            f"served by the gateway {handled}, counted by stats {total} ({verdict}); this "
            f"run's client: answered {answered}, counted {mine}; exact "
            f"{time.monotonic() - back_at:.1f} s after the broker came back"
        )
    finally:
        print("aimp down ...", flush=True)
        subprocess.run([AIMP, "down"], env=env, capture_output=True, timeout=200)


if __name__ == "__main__":
    main()
