"""Talking to the running platform as its users do: tokens, the demo deployment, pods."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from aimp_cli.home import Home

#: Calls from the CLI to the local platform give up after this long.
HTTP_TIMEOUT_S = 10.0
DEMO_SERVICE = "iris"


def admin_token(gateway_url: str, credentials: dict[str, Any]) -> str:
    """Sign in as the admin user with the OAuth2 password grant."""
    resp = httpx.post(
        f"{gateway_url}/oauth/token",
        data={
            "grant_type": "password",
            "username": credentials["admin"]["username"],
            "password": credentials["admin"]["password"],
        },
        timeout=HTTP_TIMEOUT_S,
    )
    if resp.status_code != 200:
        raise SystemExit(f"admin sign-in at {gateway_url}/oauth/token failed: {resp.text[:300]}")
    return str(resp.json()["access_token"])


def client_token(gateway_url: str, client: dict[str, Any]) -> str:
    """A token for a business client (client credentials grant, HTTP Basic)."""
    resp = httpx.post(
        f"{gateway_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=HTTP_TIMEOUT_S,
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


@dataclass(frozen=True)
class Demo:
    """One demo deployment: the iris model on one runtime."""

    service: str
    runtime: str


def demos(native_runtimes: list[str]) -> list[Demo]:
    """The iris demo on Triton, plus one per native runtime that was built."""
    return [Demo(DEMO_SERVICE, "triton")] + [
        Demo(f"{DEMO_SERVICE}-{r}", r) for r in native_runtimes
    ]


def ensure_demos(
    home: Home,
    deploy_url: str,
    gateway_url: str,
    credentials: dict[str, Any],
    native_runtimes: list[str],
    say: Any,
) -> None:
    """Deploy each demo unless it is deployed already, then wait until each answers."""
    headers = {"Authorization": f"Bearer {admin_token(gateway_url, credentials)}"}
    model_file: Path | None = None
    for demo in demos(native_runtimes):
        existing = httpx.get(
            f"{deploy_url}/v1/deployments/{demo.service}", headers=headers, timeout=HTTP_TIMEOUT_S
        )
        if existing.status_code == 200:
            continue
        if existing.status_code != 404:
            raise SystemExit(
                f"deploy-control answered {existing.status_code}: {existing.text[:300]}"
            )
        if model_file is None:
            from aimp_inference.demo import train_iris

            model_file = train_iris(home.models / DEMO_SERVICE / "1")
            say(f"demo model     trained on scikit-learn's iris data: {model_file}")
        resp = httpx.post(
            f"{deploy_url}/v1/deployments",
            json={
                "name": demo.service,
                "model_file": str(model_file),
                "framework": "sklearn",
                "runtime": demo.runtime,
                "replicas": 1,
            },
            headers=headers,
            timeout=HTTP_TIMEOUT_S,
        )
        if resp.status_code not in (200, 201):
            raise SystemExit(f"deploying demo '{demo.service}' failed: {resp.text[:500]}")
        say(f"demo model     deploying '{demo.service}' on runtime {demo.runtime}")
    token = client_token(gateway_url, credentials["clients"][0])
    for demo in demos(native_runtimes):
        wait_model_ready(gateway_url, token, demo.service, say)


def wait_model_ready(
    gateway_url: str, token: str, service: str, say: Any, timeout_s: float = 90.0
) -> None:
    """Poll the model's readiness through the gateway, as a business app would see it."""
    url = f"{gateway_url}/v2/models/{service}/ready"
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < timeout_s:
        try:
            resp = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5.0)
            if resp.status_code == 200:
                waited = time.monotonic() - start
                say(f"{service:14} answers through the gateway ({waited:.1f} s)")
                return
            last = f"HTTP {resp.status_code} {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}"
        time.sleep(0.25)
    raise SystemExit(f"'{service}' did not answer within {timeout_s:.0f} s (last: {last})")


def pods(deploy_url: str, gateway_url: str, credentials: dict[str, Any]) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {admin_token(gateway_url, credentials)}"}
    resp = httpx.get(f"{deploy_url}/v1/pods", headers=headers, timeout=HTTP_TIMEOUT_S)
    resp.raise_for_status()
    body = resp.json()
    items = body.get("pods", body) if isinstance(body, dict) else body
    return list(items)
