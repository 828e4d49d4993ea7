"""Conformance: eureka-js-client (npm, pinned in package-lock.json) against the aimp registry.

The node script drives the client step by step; between steps this test checks and
changes the registry over REST. ``npm ci`` runs once per session when node_modules
is missing; the test is skipped only when ``node`` or ``npm`` is not installed.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimp_core.registry_client import instance_document

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
SCRIPT = HERE / "eureka_js_conformance.js"
JSON = {"Accept": "application/json"}
STEP_TIMEOUT_S = 15.0


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The pinned npm dependencies, installed with ``npm ci`` when missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the eureka-js-client conformance test")
    modules = HERE / "node_modules"
    if not (modules / "eureka-js-client" / "package.json").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return modules


class Script:
    """The node script as a child process, read line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["node", str(SCRIPT)],
            cwd=HERE,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def step(self, name: str) -> dict[str, Any]:
        """The script's report of step ``name`` (fails on an error report or a timeout)."""
        line = self._lines.get(timeout=STEP_TIMEOUT_S)
        assert line, f"the script exited early: {self.stderr()}"
        report: dict[str, Any] = json.loads(line)
        assert report["step"] == name, report
        return report

    def proceed(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("next\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-2000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)


@pytest.fixture
def script(registry_url: str, node_modules: Path) -> Iterator[Script]:
    running = Script(
        {
            "EUREKA_URL": registry_url,
            "APP": "jsiris",
            "OTHER_APP": "jsother",
            "INSTANCE_PORT": "9901",
            "STEP_TIMEOUT_MS": str(int(STEP_TIMEOUT_S * 1000 - 2000)),
        }
    )
    yield running
    running.close()


def _instance(http: httpx.Client, registry_url: str, app: str, iid: str) -> Any:
    resp = http.get(f"{registry_url}/apps/{app}/{iid}")
    return resp.json()["instance"] if resp.status_code == 200 else None


def test_eureka_js_client_lifecycle(script: Script, registry_url: str) -> None:
    """eureka-js-client registers, renews, fetches, follows status changes and deregisters."""
    iid = "127.0.0.1:jsiris:9901"
    with httpx.Client(timeout=5, headers=JSON) as http:
        registered = script.step("registered")
        assert [i["instanceId"] for i in registered["seen"]] == [iid]
        inst = _instance(http, registry_url, "JSIRIS", iid)
        assert inst["status"] == "UP" and inst["port"]["$"] == 9901
        assert inst["metadata"] == {"aimp.revision": "js1", "aimp.runtime": "node"}
        assert inst["leaseInfo"]["renewalIntervalInSecs"] == 1
        script.proceed()

        renewed = script.step("renewed")
        assert renewed["counts"]["heartbeat"] >= 3
        lease = _instance(http, registry_url, "JSIRIS", iid)["leaseInfo"]
        assert lease["lastRenewalTimestamp"] > lease["registrationTimestamp"]
        other = instance_document(app="jsother", instance_id="other-1", ip="10.0.0.9", port=81)
        assert http.post(f"{registry_url}/apps/JSOTHER", json=other).status_code == 204
        script.proceed()

        fetched = script.step("fetched")
        assert [(i["instanceId"], i["port"]) for i in fetched["others"]] == [("other-1", 81)]
        assert fetched["viaDelta"] is True  # found by a delta fetch after the first full one
        resp = http.put(
            f"{registry_url}/apps/JSIRIS/{iid}/status", params={"value": "OUT_OF_SERVICE"}
        )
        assert resp.status_code == 200
        script.proceed()

        seen = script.step("status_seen")
        assert seen["instance"]["status"] == "OUT_OF_SERVICE"
        assert http.delete(f"{registry_url}/apps/JSIRIS/{iid}/status").status_code == 200
        script.proceed()

        again = script.step("reregistered")
        assert again["instance"]["status"] == "UP"
        assert again["counts"]["registered"] >= 2
        assert _instance(http, registry_url, "JSIRIS", iid)["status"] == "UP"
        script.proceed()

        script.step("deregistered")
        assert _instance(http, registry_url, "JSIRIS", iid) is None
        assert script.proc.wait(timeout=10) == 0
        http.delete(f"{registry_url}/apps/JSOTHER/other-1")


def test_registry_answers_gzip_as_the_js_client_asks(registry_url: str) -> None:
    """With Accept-Encoding: gzip (as eureka-js-client sends) a large listing is gzipped."""
    with httpx.Client(timeout=5) as http:
        docs = [
            instance_document(app="jsgzip", instance_id=f"g-{i}", ip="10.0.0.1", port=8000 + i)
            for i in range(5)
        ]
        for doc in docs:
            assert http.post(f"{registry_url}/apps/JSGZIP", json=doc).status_code == 204
        try:
            raw = http.get(
                f"{registry_url}/apps/JSGZIP",
                headers={**JSON, "Accept-Encoding": "gzip"},
                extensions={},
            )
            assert raw.headers["content-encoding"] == "gzip"
            body = raw.json()  # httpx decompresses; check the bytes too
            assert len(body["application"]["instance"]) == 5
            with http.stream(
                "GET", f"{registry_url}/apps/JSGZIP", headers={**JSON, "Accept-Encoding": "gzip"}
            ) as stream:
                compressed = b"".join(stream.iter_raw())
            assert json.loads(gzip.decompress(compressed)) == body
            plain = http.get(
                f"{registry_url}/apps/JSGZIP", headers={**JSON, "Accept-Encoding": "identity"}
            )
            assert "content-encoding" not in plain.headers
        finally:
            for i in range(5):
                http.delete(f"{registry_url}/apps/JSGZIP/g-{i}")
