"""Talking to the running platform as its users do: tokens, the demo deployment, pods."""

from __future__ import annotations

import time
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


def ensure_demo(
    home: Home, deploy_url: str, gateway_url: str, credentials: dict[str, Any], say: Any
) -> None:
    """Deploy the iris demo model unless it is deployed already, then wait until it answers."""
    headers = {"Authorization": f"Bearer {admin_token(gateway_url, credentials)}"}
    existing = httpx.get(
        f"{deploy_url}/v1/deployments/{DEMO_SERVICE}", headers=headers, timeout=HTTP_TIMEOUT_S
    )
    if existing.status_code == 404:
        from aimp_inference.demo import train_iris

        model_file = train_iris(home.models / DEMO_SERVICE / "1")
        say(f"demo model     trained on scikit-learn's iris data: {model_file}")
        resp = httpx.post(
            f"{deploy_url}/v1/deployments",
            json={
                "name": DEMO_SERVICE,
                "model_file": str(model_file),
                "framework": "sklearn",
                "replicas": 1,
            },
            headers=headers,
            timeout=HTTP_TIMEOUT_S,
        )
        if resp.status_code not in (200, 201):
            raise SystemExit(f"deploying the demo model failed: {resp.text[:500]}")
        say(f"demo model     deployed as service '{DEMO_SERVICE}', waiting for it to answer")
    elif existing.status_code != 200:
        raise SystemExit(f"deploy-control answered {existing.status_code}: {existing.text[:300]}")
    wait_model_ready(gateway_url, client_token(gateway_url, credentials["clients"][0]), say)


def wait_model_ready(gateway_url: str, token: str, say: Any, timeout_s: float = 90.0) -> None:
    """Poll the model's readiness through the gateway, as a business app would see it."""
    url = f"{gateway_url}/v2/models/{DEMO_SERVICE}/ready"
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < timeout_s:
        try:
            resp = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5.0)
            if resp.status_code == 200:
                say(
                    f"demo model     answers through the gateway ({time.monotonic() - start:.1f} s)"
                )
                return
            last = f"HTTP {resp.status_code} {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}"
        time.sleep(0.25)
    raise SystemExit(f"the demo model did not answer within {timeout_s:.0f} s (last: {last})")


def pods(deploy_url: str, gateway_url: str, credentials: dict[str, Any]) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {admin_token(gateway_url, credentials)}"}
    resp = httpx.get(f"{deploy_url}/v1/pods", headers=headers, timeout=HTTP_TIMEOUT_S)
    resp.raise_for_status()
    body = resp.json()
    items = body.get("pods", body) if isinstance(body, dict) else body
    return list(items)
