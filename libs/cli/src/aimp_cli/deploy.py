"""`aimp deploy MODEL_FILE --name NAME`: upload, deploy, and wait until it answers.

1. the file is uploaded to deploy-control's model registry as the next version of
   model NAME (``POST /v1/models/NAME/versions``, streamed, with its SHA-256 so a damaged
   upload is refused), where its schema is checked against the file or inferred;
2. that version is deployed as service NAME (``POST /v1/deployments``), and the pods'
   states are shown until every replica runs;
3. a real inference call (zeros shaped by the schema) goes through the gateway
   (``/v2/models/NAME/infer``) until it answers.

The admin API of deploy-control is called directly (the gateway forwards only its own
and the throttle service's admin routes); the token comes from the gateway as for every
other command. Exit codes: 0 served, 1 the platform refused or did not answer in time,
2 a problem with the command line or the local files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import httpx
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from aimp_cli import platform
from aimp_cli.deploy_loadtest import LoadTestFailed, run_load_test
from aimp_cli.deploy_plan import (
    FRAMEWORKS,
    answer_problem,
    framework_for,
    pod_errors,
    pod_states,
    ready_pods,
    sample_request,
)
from aimp_cli.home import Home, ensure_credentials
from aimp_cli.stack import Ports
from aimp_core.settings import CoreSettings

#: Connecting to a local service; an upload then streams for as long as it needs.
CONNECT_TIMEOUT_S = 5.0
#: Waiting for deploy-control's answer once the upload is sent: it reads the model
#: (importing scikit-learn or ONNX Runtime) before answering.
UPLOAD_READ_TIMEOUT_S = 180.0
POLL_INTERVAL_S = 0.5


class Failed(Exception):
    """Stop with a message and an exit code (1 platform, 2 usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "deploy",
        help="publish a model file as a service and wait until it answers through the gateway",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("model_file", type=Path, metavar="MODEL_FILE")
    p.add_argument("--name", required=True, help="the service (and model) name: a DNS label")
    p.add_argument("--schema", type=Path, help="JSON file: {inputs: [...], outputs?: [...]}")
    p.add_argument("--framework", choices=FRAMEWORKS, help="default: from the file's extension")
    p.add_argument("--runtime", default="triton", help="triton (default), cpp or java")
    p.add_argument("--replicas", type=int, default=1, help="pods to start (default 1)")
    p.add_argument(
        "--replace",
        action="store_true",
        help="if service NAME already serves another version, delete it and deploy this one "
        "(callers see errors meanwhile)",
    )
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait (default 180)")
    p.add_argument("--deploy-url", help="deploy-control (default: the local stack's)")
    p.add_argument("--gateway-url", help="gateway (default: the local stack's)")
    p.add_argument(
        "--token",
        default=os.environ.get("AIMP_TOKEN"),
        help="bearer token with role operator or admin (default: $AIMP_TOKEN, else the "
        "local admin signs in with AIMP_HOME's credentials.json)",
    )
    p.add_argument(
        "--load-test-ms",
        type=float,
        metavar="P99_MS",
        help="after it answers, find the highest rate one replica sustains with p99 under "
        "this target and print the recommended concurrency and autoscaling target",
    )
    p.add_argument(
        "--load-test-max-rate", type=float, default=2000.0, help="load test cap, calls/s"
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_deploy)


def _say(message: str) -> None:
    print(message, flush=True)


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("detail") or body.get("error") or body)[:2000]
    except (json.JSONDecodeError, AttributeError):
        return resp.text[:2000]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class _Counted:
    """A file that reports every read to a progress bar (httpx streams it in chunks)."""

    def __init__(self, raw: BinaryIO, on_read: Any) -> None:
        self.raw, self.on_read = raw, on_read

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.on_read(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def fileno(self) -> int:  # lets httpx send a Content-Length
        return self.raw.fileno()


def _local_inputs(args: argparse.Namespace) -> tuple[str, dict[str, Any] | None]:
    path: Path = args.model_file
    if not path.is_file():
        raise Failed(f"{path} is not a file", 2)
    try:
        framework = framework_for(path, args.framework)
    except ValueError as exc:
        raise Failed(str(exc), 2) from None
    schema = None
    if args.schema is not None:
        try:
            schema = json.loads(args.schema.read_text())
        except (OSError, ValueError) as exc:
            raise Failed(f"--schema {args.schema}: not a readable JSON file ({exc})", 2) from None
        if not isinstance(schema, dict) or "inputs" not in schema:
            raise Failed(
                f"--schema {args.schema}: expected {{'inputs': [...], 'outputs'?: [...]}}", 2
            )
        schema = {k: schema[k] for k in ("inputs", "outputs") if k in schema}
    return framework, schema


def _upload(
    http: httpx.Client, deploy: str, args: argparse.Namespace, framework: str, schema: Any
) -> dict[str, Any]:
    path: Path = args.model_file
    meta: dict[str, Any] = {"framework": framework, "sha256": _sha256(path)}
    if schema is not None:
        meta["schema"] = schema
    size = path.stat().st_size
    columns = [TextColumn("upload"), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
    with Progress(*columns, disable=args.quiet) as progress, open(path, "rb") as raw:
        task = progress.add_task("upload", total=size)
        counted = _Counted(raw, lambda n: progress.update(task, advance=n))
        try:
            resp = http.post(
                f"{deploy}/v1/models/{args.name}/versions",
                files={
                    "file": (path.name, cast(IO[bytes], counted)),
                    "metadata": (None, json.dumps(meta)),
                },
                timeout=httpx.Timeout(UPLOAD_READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            )
        except httpx.HTTPError as exc:
            raise Failed(
                f"uploading to {deploy} failed: {type(exc).__name__}: {exc} (a file over the "
                "server's size limit is cut off like this; see "
                "AIMP_DEPLOY_CONTROL_UPLOAD_MAX_BYTES)"
            ) from None
    if resp.status_code != 201:
        raise Failed(f"the model was refused (HTTP {resp.status_code}): {_detail(resp)}")
    body: dict[str, Any] = resp.json()
    return body


def _deploy(http: httpx.Client, deploy: str, args: argparse.Namespace, version: int) -> None:
    body = {
        "name": args.name,
        "model": args.name,
        "version": version,
        "runtime": args.runtime,
        "replicas": args.replicas,
    }
    resp = http.post(f"{deploy}/v1/deployments", json=body)
    if resp.status_code == 409 and args.replace:
        _say(f"replacing  deployment '{args.name}' (it served another version)")
        gone = http.delete(f"{deploy}/v1/deployments/{args.name}", timeout=60.0)
        if gone.status_code not in (204, 404):
            raise Failed(
                f"deleting '{args.name}' failed (HTTP {gone.status_code}): {_detail(gone)}"
            )
        resp = http.post(f"{deploy}/v1/deployments", json=body)
    if resp.status_code == 409:
        raise Failed(f"{_detail(resp)} (or pass --replace)")
    if resp.status_code not in (200, 201):
        raise Failed(f"deploying was refused (HTTP {resp.status_code}): {_detail(resp)}")


def _wait_pods(http: httpx.Client, deploy: str, args: argparse.Namespace, deadline: float) -> None:
    last = ""
    while True:
        resp = http.get(f"{deploy}/v1/deployments/{args.name}")
        if resp.status_code != 200:
            raise Failed(f"reading deployment '{args.name}' failed: {_detail(resp)}")
        dep = resp.json()
        line = pod_states(dep)
        if line != last and not args.quiet:
            _say(f"pods       {line}")
        last = line
        if ready_pods(dep) >= args.replicas:
            return
        if time.monotonic() > deadline:
            errors = "; ".join(pod_errors(dep)) or "no error reported"
            raise Failed(f"the pods did not all run within {args.timeout:g} s ({line}; {errors})")
        time.sleep(POLL_INTERVAL_S)


def _wait_answer(
    gateway: str, token: str, name: str, schema: dict[str, Any], deadline: float
) -> dict[str, Any]:
    request = sample_request(schema)
    headers = {"Authorization": f"Bearer {token}"}
    last = "no answer yet"
    with httpx.Client(timeout=10.0, headers=headers) as client:
        while time.monotonic() < deadline:
            try:
                resp = client.post(f"{gateway}/v2/models/{name}/infer", json=request)
                if resp.status_code == 200:
                    body: dict[str, Any] = resp.json()
                    problem = answer_problem(schema, body)
                    if problem is None:
                        return body
                    last = problem
                else:
                    last = f"HTTP {resp.status_code} {_detail(resp)[:300]}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(POLL_INTERVAL_S)
    raise Failed(f"'{name}' did not answer through the gateway {gateway} in time (last: {last})")


def _token(args: argparse.Namespace, gateway: str) -> str:
    if args.token:
        return str(args.token)
    home = Home(CoreSettings().home)
    if not home.credentials.exists():
        raise Failed(
            f"no token: pass --token (or set AIMP_TOKEN), or run `aimp up` so that "
            f"{home.credentials} exists",
            2,
        )
    return platform.admin_token(gateway, ensure_credentials(home))


def run(args: argparse.Namespace) -> None:
    start = time.monotonic()
    deadline = start + args.timeout
    framework, schema = _local_inputs(args)
    ports = Ports.from_env()
    deploy = (args.deploy_url or f"http://127.0.0.1:{ports.deploy_control}").rstrip("/")
    gateway = (args.gateway_url or f"http://127.0.0.1:{ports.gateway}").rstrip("/")
    token = _token(args, gateway)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(headers=headers, timeout=platform.HTTP_TIMEOUT_S) as http:
        version = _upload(http, deploy, args, framework, schema)
        uploaded = time.monotonic()
        origin = (
            "checked against the file"
            if version["schema_source"] == "declared"
            else "read from the file"
        )
        _say(
            f"uploaded   model '{args.name}' version {version['version']} ({framework}, "
            f"{version['size_bytes']} bytes, sha256 {version['sha256'][:12]}…; schema {origin})"
        )
        _deploy(http, deploy, args, version["version"])
        _wait_pods(http, deploy, args, deadline)
        running = time.monotonic()
    answer = _wait_answer(gateway, token, args.name, version["schema"], deadline)
    done = time.monotonic()
    outputs = ", ".join(f"{o['name']} {o.get('shape')}" for o in answer.get("outputs", []))
    _say(f"answered   {gateway}/v2/models/{args.name}/infer -> {outputs}")
    _say(
        f"deployed '{args.name}' in {done - start:.1f} s (upload and checks "
        f"{uploaded - start:.1f} s, pods {running - uploaded:.1f} s, first answer through the "
        f"gateway {done - running:.1f} s)"
    )
    if args.load_test_ms is not None:
        with httpx.Client(headers=headers, timeout=platform.HTTP_TIMEOUT_S) as http:
            try:
                run_load_test(
                    http,
                    deploy,
                    args.name,
                    latency_target_ms=args.load_test_ms,
                    max_rate=args.load_test_max_rate,
                    timeout_s=max(args.timeout, 600.0),
                    say=_say,
                )
            except LoadTestFailed as exc:
                raise Failed(str(exc)) from None


def cmd_deploy(args: argparse.Namespace) -> int:
    try:
        run(args)
    except Failed as exc:
        print(f"aimp deploy: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except httpx.HTTPError as exc:
        print(f"aimp deploy: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
