"""`aimp backflow export`: download a service's sampled calls in a time range.

The stats service streams one gzip stream of JSON Lines (``GET /v1/backflow/export``);
this writes it to a file as it comes (``FILE.part`` renamed at the end, so a broken
download never looks complete), showing bytes received and records seen.
"""

from __future__ import annotations

import argparse
import json
import os
import zlib
from pathlib import Path

import httpx
from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

from aimp_cli import platform
from aimp_cli.home import Home, ensure_credentials
from aimp_cli.stack import Ports
from aimp_core.settings import CoreSettings

#: Waiting for the first byte and between chunks; a long range streams for as long as
#: it needs, but a stats service that stops sending is noticed.
READ_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5.0
CHUNK_BYTES = 64 * 1024


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backflow = sub.add_parser("backflow", help="sampled request and response payloads")
    actions = backflow.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export",
        help="download a service's sampled calls in a time range (gzip JSON Lines)",
        description="Times are unix seconds or ISO-8601 (e.g. 2024-01-31T12:00:00Z; no "
        "offset means UTC); since is inclusive, until exclusive, both optional.",
    )
    export.add_argument("--service", required=True, help="the service's name")
    export.add_argument("--since", help="first instant (inclusive)")
    export.add_argument("--until", help="last instant (exclusive)")
    export.add_argument("-o", "--output", required=True, type=Path, help="file to write (.gz)")
    export.add_argument(
        "--stats-url", help="stats base URL (default: the local stack's, AIMP_STATS_PORT)"
    )
    export.add_argument(
        "--token",
        default=os.environ.get("AIMP_TOKEN"),
        help="bearer token with role operator or admin (default: $AIMP_TOKEN, else the "
        "local admin signs in with AIMP_HOME's credentials.json)",
    )
    export.add_argument("--quiet", action="store_true", help="no progress display")
    export.set_defaults(func=cmd_export)


def _token(args: argparse.Namespace, ports: Ports) -> str:
    if args.token:
        return str(args.token)
    home = Home(CoreSettings().home)
    if not home.credentials.exists():
        raise SystemExit(
            f"no token: pass --token (or set AIMP_TOKEN), or run `aimp up` so that "
            f"{home.credentials} exists"
        )
    gateway = f"http://127.0.0.1:{ports.gateway}"
    return platform.admin_token(gateway, ensure_credentials(home))


def cmd_export(args: argparse.Namespace) -> int:
    ports = Ports.from_env()
    base = (args.stats_url or f"http://127.0.0.1:{ports.stats}").rstrip("/")
    params = {"service": args.service}
    params.update({k: getattr(args, k) for k in ("since", "until") if getattr(args, k)})
    headers = {"Authorization": f"Bearer {_token(args, ports)}"}
    output: Path = args.output
    partial = output.with_name(output.name + ".part")
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    counter = _LineCounter()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[records]} records"),
        disable=args.quiet,
        transient=False,
    )
    try:
        with (
            httpx.stream(
                "GET", f"{base}/v1/backflow/export", params=params, headers=headers, timeout=timeout
            ) as resp,
            progress,
        ):
            if resp.status_code != 200:
                resp.read()
                raise SystemExit(f"export failed: HTTP {resp.status_code}: {_detail(resp)}")
            task = progress.add_task(f"{args.service}", total=None, records=0)
            with open(partial, "wb") as out:
                for chunk in resp.iter_raw(CHUNK_BYTES):
                    out.write(chunk)
                    counter.feed(chunk)
                    progress.update(task, advance=len(chunk), records=counter.lines)
        partial.replace(output)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"export from {base} failed: {type(exc).__name__}: {exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    print(f"wrote {counter.lines} records ({output.stat().st_size} bytes) to {output}", flush=True)
    return 0


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))[:500]
    except (json.JSONDecodeError, AttributeError):
        return resp.text[:500]


class _LineCounter:
    """Counts the JSON lines in a gzip stream as its chunks arrive."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self.lines = 0

    def feed(self, chunk: bytes) -> None:
        self.lines += self._inflate.decompress(chunk).count(b"\n")
