"""The gateway against nginx: requests/s and p50/p99 latency, and added latency at 1,000/s.

Never part of the tests. Needs nginx and wrk (Debian packages; install them as root,
this script installs nothing):

    apt-get install -y nginx wrk
    uv run python bench/gateway.py [--duration 10] [--connections 50] [--profile]

Starts everything on free loopback ports under a temporary directory and stops it at
the end: a trivial upstream (nginx ``return 200`` on its own port, the same for every
row), nginx as a proxy (one worker process, keep-alive to the upstream), the aimp
registry, a private redis-server, a Tansu broker and the gateway.

Rows (wrk, one thread, ``--connections`` keep-alive connections, ``--duration`` s):
  (a) direct: wrk -> upstream
  (b) nginx, one worker: wrk -> nginx proxy_pass -> upstream
  (c) gateway, one worker, the full pipeline: JWT (cached verification), RBAC, throttle
      against real Redis (exact per call; the checks of one event-loop turn share one
      script call), routing and load balancing
      over the instance registered in the real registry, breaker bookkeeping, one
      request event per call to Kafka (Tansu)
  (d) the gateway with as many processes as cores on one port (SO_REUSEPORT,
      AIMP_GATEWAY_REUSE_PORT=true, one AIMP_HOME each)
then (b) and (c) again at a fixed ~1,000 requests/s (wrk with a per-request delay:
``--paced-connections`` connections each waiting connections/1000 s between calls;
wrk is closed loop, so the rate achieved is printed) for the added p50/p99.

Rows (c) and (d) also give the gateway processes' CPU time per call (user + system,
from /proc): on a shared machine a steadier figure than requests/s. Row (d) says how many
of its processes took a share of the load.

``--profile`` also runs py-spy (``uvx py-spy``; needs the network once, or py-spy on
PATH) against the one-worker gateway under load and prints its top functions and the
call's CPU by stage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "throttle"))

from machine import cpu_model  # noqa: E402
from throttle_stack import (  # noqa: E402
    BIN,
    RedisServer,
    spawn,
    start_registry,
    start_tansu,
    stop,
    tail,
)

from aimp_core.net import free_port, port_open, wait_http_ok  # noqa: E402
from aimp_core.registry_client import EurekaClient, instance_document  # noqa: E402

SERVICE = "bench-upstream"
CLIENT, SECRET = "bench-client", "bench-secret-not-for-production"


def register_upstream(registry_url: str, port: int) -> None:
    """The trivial upstream as the one UP instance of SERVICE in the real registry."""

    async def go() -> None:
        client = EurekaClient(registry_url, timeout_s=5)
        try:
            await client.register(
                instance_document(
                    app=SERVICE.upper(),
                    instance_id=f"{SERVICE}-{port}",
                    ip="127.0.0.1",
                    port=port,
                    lease_duration_s=3600,
                )
            )
        finally:
            await client.aclose()

    asyncio.run(go())


# -- nginx -------------------------------------------------------------------------------

NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {root}/nginx-{name}.pid;
error_log {root}/nginx-{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp-{name};
    proxy_temp_path {root}/tmp-{name};
    fastcgi_temp_path {root}/tmp-{name};
    uwsgi_temp_path {root}/tmp-{name};
    scgi_temp_path {root}/tmp-{name};
    keepalive_requests 1000000;
    {body}
}}
"""
UPSTREAM_BODY = """
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{ return 200 "ok"; }}
    }}
"""
PROXY_BODY = """
    upstream trivial {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://trivial;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


def start_nginx(root: Path, name: str, workers: int | str, body: str) -> subprocess.Popen[bytes]:
    (root / f"tmp-{name}").mkdir(parents=True, exist_ok=True)
    conf = root / f"nginx-{name}.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, root=root, name=name, body=body))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc: subprocess.Popen[bytes] = spawn(
        [nginx, "-c", str(conf), "-e", str(root / f"nginx-{name}-error.log")],
        dict(os.environ),
        root / f"nginx-{name}.out",
    )
    return proc


# -- the gateway ---------------------------------------------------------------------------------


@dataclass
class Gateways:
    procs: list[subprocess.Popen[bytes]]
    url: str
    logs: list[Path]

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)


def start_gateways(
    root: Path,
    count: int,
    *,
    registry_url: str,
    redis_url: str,
    kafka: str,
    key_file: Path,
    creds: Path,
) -> Gateways:
    port = free_port()
    procs, logs = [], []
    for i in range(count):
        home = root / f"gw{count}-{i}"
        env = {
            **os.environ,
            "AIMP_HOME": str(home),
            "AIMP_GATEWAY_PORT": str(port),
            "AIMP_REDIS_URL": redis_url,
            "AIMP_REGISTRY_URL": registry_url,
            "AIMP_KAFKA_BOOTSTRAP": kafka,
            "AIMP_TOKEN_ISSUER": "http://bench.gateway",
            "AIMP_GATEWAY_SIGNING_KEY_FILE": str(key_file),
            "AIMP_GATEWAY_CREDENTIALS_FILE": str(creds),
            # The default limit still runs its Redis check on every call; it must not refuse.
            "AIMP_GATEWAY_RATE_PER_S": "1000000",
            "AIMP_GATEWAY_RATE_BURST": "1000000",
            "AIMP_GATEWAY_REUSE_PORT": "true",
            "AIMP_LOG_LEVEL": "WARNING",
            "AIMP_GRACEFUL_SHUTDOWN_S": "2",
        }
        log = root / f"gateway{count}-{i}.log"
        procs.append(spawn([str(BIN / "aimp-gateway")], env, log))
        logs.append(log)
    gws = Gateways(procs, f"http://127.0.0.1:{port}", logs)
    try:
        wait_http_ok(gws.url + "/readyz", timeout_s=60)
        time.sleep(1.0)  # every process (not just the first to answer) is ready
    except TimeoutError:
        gws.stop()
        raise RuntimeError(f"the gateway did not become ready:\n{tail(logs[0])}") from None
    return gws


def token(url: str) -> str:
    resp = httpx.post(
        url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(CLIENT, SECRET),
        timeout=10,
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


# -- wrk ---------------------------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str,
    *,
    connections: int,
    duration_s: float,
    headers: dict[str, str],
    delay_ms: float | None = None,
    root: Path,
) -> Result:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    if delay_ms is not None:
        script = root / "paced.lua"
        script.write_text(f"function delay()\n  return {delay_ms:g}\nend\n")
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = []
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors.append(f"{m.group(1)} non-2xx")
    if m := re.search(r"Socket errors: (.*)", out):
        errors.append(f"socket errors: {m.group(1)}")
    return Result(rps, p50, p99, "; ".join(errors))


def row(label: str, res: Result, cpu_us: float | None = None) -> None:
    note = f"   ({res.errors})" if res.errors else ""
    cpu = f" {cpu_us:9.0f}" if cpu_us is not None else f" {'':9}"
    print(f"  {label:44} {res.rps:10.0f} {res.p50_ms:9.3f} {res.p99_ms:9.3f}{cpu}{note}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loaded(
    gws: Gateways,
    url: str,
    *,
    connections: int,
    duration_s: float,
    headers: dict[str, str],
    root: Path,
) -> tuple[Result, list[float]]:
    """wrk against the gateways, and the CPU seconds each gateway process used meanwhile."""
    before = [cpu_seconds(p.pid) for p in gws.procs]
    res = wrk(url, connections=connections, duration_s=duration_s, headers=headers, root=root)
    used = [cpu_seconds(p.pid) - b for p, b in zip(gws.procs, before, strict=True)]
    return res, used


def cpu_per_call_us(res: Result, used: list[float], duration_s: float) -> float:
    return sum(used) / max(res.rps * duration_s, 1.0) * 1e6


def profile(pid: int, seconds: float, root: Path, cpu_us: float | None = None) -> None:
    """py-spy's view of one gateway process under load: top functions by own time, and
    the call's CPU by stage (``cpu_us``: the measured CPU per call, to print microseconds)."""
    spy = shutil.which("py-spy")
    argv = [spy] if spy else ["uvx", "py-spy"]
    out = root / "profile.txt"
    cmd = [
        *argv,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        "--rate",
        "250",
    ]
    subprocess.run(cmd, capture_output=True, check=False)
    if not out.exists():
        print("  (py-spy did not run: install it with `uv tool install py-spy`)")
        return
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    print(f"  py-spy: {samples} samples; top functions by own time (share of samples):")
    for name, count in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
        print(f"    {count / samples * 100:5.1f}%  {name}")
    per_stage = stage_shares(out)
    busy = sum(per_stage.values())
    print("  where one call's CPU goes (each sample to the innermost stage on its stack):")
    for stage, share in sorted(per_stage.items(), key=lambda kv: -kv[1]):
        us = f"{share / busy * cpu_us:7.1f} us" if cpu_us else ""
        print(f"    {share * 100:5.1f}%  {us}  {stage}")
    print(f"  raw stacks in {out} (flamegraph: py-spy record --format flamegraph)")


#: Stages of a call, matched against py-spy frames ("function (path:line)"), innermost first.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("response writes to the caller (uvicorn, send syscall)", ("RequestResponseCycle.send",)),
    ("upstream call (HTTP/1.1 client, send/recv)", ("aimp_gateway/upstream.py",
                                                    "aimp_gateway/http1.py")),
    ("throttle (batched Redis script, redis-py)", ("aimp_gateway/throttle.py",
                                                   "aimp_core/ratelimit/", "redis/")),
    ("request event (queue, JSON, Kafka sender)", ("aimp_core/publisher.py", "aiokafka/",
                                                   "aimp_gateway/outcomes.py")),
    ("JWT verification and RBAC", ("aimp_gateway/tokens.py", "aimp_core/auth.py", "jwt/",
                                   "authlib/", "joserfc/")),
    ("routing, balancing, fuses", ("aimp_gateway/router.py", "aimp_gateway/balancer.py",
                                   "aimp_gateway/fuse", "aimp_gateway/breaker.py",
                                   "aimp_gateway/outlier.py", "aimp_gateway/revisions.py",
                                   "aimp_gateway/bulkhead.py", "aimp_gateway/retry_budget.py",
                                   "aimp_gateway/policy.py", "aimp_gateway/paths.py",
                                   "aimp_gateway/routes.py", "aimp_gateway/windows.py")),
    ("trace context and metrics", ("aimp_core/tracing.py", "aimp_core/metrics.py",
                                   "prometheus_client/")),
    ("data-plane glue (proxy, headers, dispatch)", ("aimp_gateway/proxy.py",
                                                    "aimp_gateway/headers.py",
                                                    "aimp_gateway/asgi.py")),
    ("HTTP server: accept, parse, ASGI task (uvicorn, httptools)", ("uvicorn/",
                                                                    "aimp_core/serve.py")),
)  # fmt: skip


def stage_shares(raw: Path) -> dict[str, float]:
    """Share of all samples per stage; the rest is the event loop itself (uvloop's I/O
    polling and reads, task switching) and whatever else the process runs."""
    counts: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        samples += count
        stage = "event loop: polling, socket reads, task switches"
        for frame in reversed(stack.split(";")):
            found = next((name for name, marks in STAGES if any(m in frame for m in marks)), None)
            if found is not None:
                stage = found
                break
        counts[stage] = counts.get(stage, 0) + count
    return {stage: n / max(samples, 1) for stage, n in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--paced-connections", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0, help="paced rows: calls/s")
    parser.add_argument("--profile", action="store_true", help="py-spy on one worker")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is missing: apt-get install -y nginx wrk (as root)")
    cores = os.cpu_count() or 1
    print(
        f"machine: {cores} cores, {cpu_model()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )

    root = Path(tempfile.mkdtemp(prefix="aimp-bench-gateway-"))
    procs: list[subprocess.Popen[bytes]] = []
    redis = RedisServer(root / "redis")
    registry = tansu = None
    gws: Gateways | None = None
    try:
        up_port, proxy_port = free_port(), free_port()
        procs.append(start_nginx(root, "upstream", "auto", UPSTREAM_BODY.format(port=up_port)))
        procs.append(
            start_nginx(root, "proxy", 1, PROXY_BODY.format(port=proxy_port, upstream=up_port))
        )
        redis.start()
        registry, tansu = start_registry(root), start_tansu(root)
        for port in (up_port, proxy_port):
            deadline = time.monotonic() + 10
            while not port_open("127.0.0.1", port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start:\n{tail(root / 'nginx-proxy.out')}")
                time.sleep(0.05)
        register_upstream(registry.url, up_port)

        from aimp_gateway.keys import load_or_create

        key_file = root / "keys" / "gateway-signing.pem"
        load_or_create(key_file)
        creds = root / "credentials.json"
        creds.write_text(
            '{"admin": {"username": "admin", "password": "bench-admin-password-0"}, '
            f'"clients": [{{"client_id": "{CLIENT}", "client_secret": "{SECRET}", '
            '"roles": ["invoker"]}]}'
        )
        creds.chmod(0o600)
        common = dict(
            registry_url=registry.url,
            redis_url=redis.url,
            kafka=tansu.url,
            key_file=key_file,
            creds=creds,
        )

        direct = f"http://127.0.0.1:{up_port}/x"
        nginx_url = f"http://127.0.0.1:{proxy_port}/x"
        conns, dur = args.connections, args.duration
        results: dict[str, Result] = {}
        print(f"\nthroughput: wrk -t1 -c{conns} -d{dur:g}s, keep-alive, GET returning 'ok'")
        print(f"  {'row':44} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'CPU us/call':>9}")
        results["a"] = wrk(direct, connections=conns, duration_s=dur, headers={}, root=root)
        row("(a) direct to the upstream", results["a"])
        results["b"] = wrk(nginx_url, connections=conns, duration_s=dur, headers={}, root=root)
        row("(b) nginx, 1 worker", results["b"])

        gws = start_gateways(root, 1, **common)
        auth = {"Authorization": f"Bearer {token(gws.url)}"}
        gw_url = f"{gws.url}/svc/{SERVICE}/x"
        check = httpx.get(gw_url, headers=auth, timeout=10)
        assert check.status_code == 200 and check.text == "ok", check.text
        wrk(gw_url, connections=conns, duration_s=2, headers=auth, root=root)  # warm-up
        evals0 = redis_script_calls(redis.url)
        results["c"], used = loaded(
            gws, gw_url, connections=conns, duration_s=dur, headers=auth, root=root
        )
        evals = redis_script_calls(redis.url) - evals0
        cpu_c = cpu_per_call_us(results["c"], used, dur)
        row("(c) gateway, 1 worker, full pipeline", results["c"], cpu_c)

        delay_ms = args.paced_connections / args.rate * 1000.0
        paced: dict[str, Result] = {}
        for key, url, hdrs in (("a", direct, {}), ("b", nginx_url, {}), ("c", gw_url, auth)):
            paced[key] = wrk(
                url,
                connections=args.paced_connections,
                duration_s=dur,
                headers=hdrs,
                delay_ms=delay_ms,
                root=root,
            )
        if args.profile:
            print("\nprofile of the one-worker gateway under wrk -c50 (py-spy):")
            import threading

            load = threading.Thread(
                target=wrk,
                args=(gw_url,),
                kwargs=dict(connections=conns, duration_s=dur + 2, headers=auth, root=root),
            )
            load.start()
            time.sleep(1)
            profile(gws.procs[0].pid, dur, root, cpu_c)
            load.join()
        gws.stop()
        gws = None

        gws = start_gateways(root, cores, **common)
        auth = {"Authorization": f"Bearer {token(gws.url)}"}
        gw_url = f"{gws.url}/svc/{SERVICE}/x"
        wrk(gw_url, connections=conns, duration_s=2, headers=auth, root=root)  # warm-up
        results["d"], used = loaded(
            gws, gw_url, connections=conns, duration_s=dur, headers=auth, root=root
        )
        busy = sum(u > 0.2 * dur / cores for u in used)
        row(
            f"(d) gateway, {cores} workers (SO_REUSEPORT)",
            results["d"],
            cpu_per_call_us(results["d"], used, dur),
        )
        print(
            f"      {busy} of {len(gws.procs)} worker processes served the load (CPU s each: "
            + ", ".join(f"{u:.1f}" for u in used)
            + ")"
        )
        gws.stop()
        gws = None

        print(
            f"\nat a fixed rate: wrk -t1 -c{args.paced_connections}, each connection waiting "
            f"{delay_ms:g} ms between calls (target {args.rate:g}/s)"
        )
        print(f"  {'row':44} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
        row("(a) direct to the upstream", paced["a"])
        row("(b) nginx, 1 worker", paced["b"])
        row("(c) gateway, 1 worker, full pipeline", paced["c"])

        a, b, c, d = results["a"], results["b"], results["c"], results["d"]
        print("\nratios")
        print(
            f"  gateway / nginx throughput, 1 worker each:  {c.rps / b.rps:6.3f}"
            "   (goal: at least 0.5)"
        )
        print(f"  gateway {cores} workers / nginx 1 worker:      {d.rps / b.rps:6.3f}")
        print(f"  gateway / direct throughput:                {c.rps / a.rps:6.3f}")
        for key, label in (("b", "nginx"), ("c", "gateway")):
            p = paced[key]
            print(
                f"  {label:8} added at ~{p.rps:.0f}/s: p50 {p.p50_ms - paced['a'].p50_ms:+.3f} ms, "
                f"p99 {p.p99_ms - paced['a'].p99_ms:+.3f} ms   (goal for the gateway: "
                "p99 under +1 ms)"
            )
        print(
            f"  throttle: {evals} Redis script calls for row (c)'s {c.rps * dur:.0f} calls "
            f"({c.rps * dur / max(evals, 1):.1f} checks per call of the script: the checks of one "
            "event-loop turn go together)"
        )
        print(
            f"\nnote: wrk, the upstream, nginx, Redis, Tansu and the gateway share the "
            f"{cores} cores; load average {os.getloadavg()[0]:.2f} at the end"
        )
    finally:
        if gws is not None:
            gws.stop()
        for proc in procs:
            stop(proc)
        redis.stop()
        for part in (registry, tansu):
            if part is not None:
                part.stop()
        print(f"logs under {root}")


def redis_script_calls(url: str) -> int:
    """How many Lua script calls Redis has run (INFO commandstats: evalsha + eval)."""
    import redis as redis_sync

    client = redis_sync.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(
        int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval")
    )


if __name__ == "__main__":
    main()
