"""`aimp deploy --load-test-ms`: after the deploy answers, find what one replica sustains.

Starts deploy-control's load test (POST /v1/deployments/{name}/loadtest), shows each
step as it is measured, and prints the result (the highest rate under the latency
target, the recommended concurrency and the autoscaling target).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

#: deploy-control answers the state of a running test at once; poll about once a second.
POLL_S = 1.0


class LoadTestFailed(Exception):
    """The load test could not start, failed, or outlived the time allowed."""


def run_load_test(
    http: httpx.Client,
    deploy: str,
    name: str,
    *,
    latency_target_ms: float,
    max_rate: float,
    timeout_s: float,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run the test to its end and return its final state (with ``result`` when done)."""
    url = f"{deploy}/v1/deployments/{name}/loadtest"
    resp = http.post(url, json={"latency_target_ms": latency_target_ms, "max_rate": max_rate})
    if resp.status_code != 202:
        raise LoadTestFailed(f"the load test did not start: HTTP {resp.status_code} {resp.text}")
    say(f"load test  one replica, p99 target {latency_target_ms:g} ms, up to {max_rate:g}/s")
    deadline = time.monotonic() + timeout_s
    shown = 0
    while True:
        state = http.get(url).json()
        for step in state["steps"][shown:]:
            p99 = "-" if step["p99_ms"] is None else f"{step['p99_ms']:.1f} ms"
            verdict = "ok" if step["passed"] else f"over ({step['reason']})"
            say(
                f"  step     {step['offered_rps']:8.1f}/s offered, {step['achieved_rps']:8.1f}/s "
                f"answered, p99 {p99}, errors {step['error_rate']:.1%}: {verdict}"
            )
        shown = len(state["steps"])
        if state["state"] != "running":
            break
        if time.monotonic() > deadline:
            raise LoadTestFailed(
                f"the load test is still running after {timeout_s:g} s; follow it with GET {url}"
            )
        sleep(POLL_S)
    result = state.get("result")
    if state["state"] != "done" or result is None:
        reason = state.get("error") or state.get("stop_reason") or state["state"]
        raise LoadTestFailed(f"the load test ended without a result: {reason}")
    say(
        f"sustains   {result['max_rate_rps']:.1f} calls/s per replica at p99 "
        f"{result['p99_ms']:.1f} ms; recommended concurrency {result['recommended_concurrency']}, "
        f"autoscaling target {result['autoscaling_target_rps']:.1f}/s per replica"
    )
    return dict(state)
