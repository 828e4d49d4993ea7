"""The `aimp` command: run the local platform and talk to it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from aimp_cli import backflow, deploy, platform, supervisor
from aimp_cli.home import Home, ensure_credentials
from aimp_cli.stack import NATIVE_PODS, Ports, native_pod_commands, repo_root, service_env
from aimp_core.settings import CoreSettings


def _say(message: str) -> None:
    print(message, flush=True)


def _home() -> Home:
    return Home(CoreSettings().home)


def cmd_up(_: argparse.Namespace) -> int:
    start = time.monotonic()
    home = _home()
    home.make()
    ports = Ports.from_env()
    credentials = ensure_credentials(home)
    components, redis_url = supervisor.all_components(home, ports, dict(os.environ), _say)
    env = service_env(home, ports, redis_url)
    natives = native_pod_commands(repo_root())
    for runtime, command in natives.items():
        env[f"AIMP_DEPLOY_CONTROL_{runtime.upper()}_POD_COMMAND"] = command
    for runtime in sorted(set(NATIVE_PODS) - set(natives)):
        _say(f"{runtime} pod        not built (see `make native`): its demo is skipped")
    for comp in components:
        supervisor.ensure_running(comp, home, env, _say)
    gateway = f"http://127.0.0.1:{ports.gateway}"
    deploy = f"http://127.0.0.1:{ports.deploy_control}"
    platform.ensure_demos(home, deploy, gateway, credentials, sorted(natives), _say)
    _say("")
    _say(f"aimp is up ({time.monotonic() - start:.1f} s)")
    _say(f"  gateway         {gateway}   (Open Inference Protocol under /v2, admin under /admin)")
    _say(f"  token endpoint  {gateway}/oauth/token")
    _say(f"  registry        http://127.0.0.1:{ports.registry}/eureka/apps")
    _say(f"  deploy-control  {deploy}")
    _say(f"  throttle        http://127.0.0.1:{ports.throttle}")
    _say(f"  stats           http://127.0.0.1:{ports.stats}/v1/usage")
    _say(f"  kafka           127.0.0.1:{ports.kafka}")
    _say(f"  redis           {redis_url}")
    demo_client = credentials["clients"][0]["client_id"]
    _say(f"  credentials     {home.credentials}  (admin user, demo client '{demo_client}')")
    _say(f"  logs            {home.logs}")
    _say("  stop with       make down")
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    home = _home()
    if not home.run.exists():
        _say(f"nothing to stop under {home.root}")
        return 0
    supervisor.stop_all(home, _say)
    _say("aimp is down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    home = _home()
    ports = Ports.from_env()
    statuses = supervisor.component_statuses(home, ports)
    pods: list[dict[str, object]] = []
    pods_error = None
    gateway = next((s for s in statuses if s.name == "gateway"), None)
    deploy = next((s for s in statuses if s.name == "deploy-control"), None)
    if gateway and deploy and gateway.healthy and deploy.healthy and home.credentials.exists():
        try:
            pods = platform.pods(deploy.url, gateway.url, ensure_credentials(home))
        except (SystemExit, Exception) as exc:
            pods_error = str(exc)
    if args.json:
        body: dict[str, object] = {
            "components": [s.as_dict() for s in statuses],
            "pods": pods,
        }
        if pods_error:
            body["pods_error"] = pods_error
        print(json.dumps(body, indent=2))
    else:
        for s in statuses:
            mark = "healthy" if s.healthy else ("unhealthy" if s.pid else "stopped")
            _say(f"{s.name:15} {mark:10} pid={s.pid or '-':<8} {s.url}")
        for pod in pods:
            _say(f"pod {json.dumps(pod)}")
        if pods_error:
            _say(f"pods: unavailable ({pods_error})")
    return 0 if all(s.healthy for s in statuses) else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aimp", description="aimp: the AI middle platform")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the local stack and deploy the demo model").set_defaults(
        func=cmd_up
    )
    sub.add_parser("down", help="stop everything `aimp up` started").set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="show each component's health")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    backflow.add_parser(sub)
    deploy.add_parser(sub)
    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
