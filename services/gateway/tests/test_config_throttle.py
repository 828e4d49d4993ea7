"""The default throttle limit in the config center: validated, versioned, live in every gateway."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.db import make_engine
from aimp_core.net import free_port
from aimp_core.ratelimit.policies import LimitFields
from aimp_gateway.asgi import GatewayApp
from aimp_gateway.config_schemas import ConfigDocument, ThrottleConfigWrite, to_snapshot
from aimp_gateway.config_store import ConfigStore
from aimp_gateway.config_sync import ConfigFollower
from aimp_gateway.policy import NO_THROTTLE_OVERRIDE, ConfigSnapshot, LiveConfig, ThrottleDefault
from aimp_gateway.settings import GatewaySettings
from aimp_gateway.throttle import Throttle, effective_default, make_redis

from .conftest import OipUpstream, register
from .gateways import (
    Backends,
    admin_token,
    audit_events,
    client_token,
    new_home,
    start_gateways,
    wait_until,
)

#: The settings' default in the live gateways: a slow refill, so a used bucket stays used.
RATE_PER_S, BURST = 0.01, 50
BASE = LimitFields(rate=RATE_PER_S, burst=BURST, on_redis_down="open", quota_day=7)


# -- pure parts -----------------------------------------------------------------------------


@given(
    rate=st.none() | st.floats(min_value=0.001, max_value=1e6),
    burst=st.none() | st.integers(min_value=1, max_value=1_000_000),
    down=st.sampled_from([None, "open", "closed"]),
)
def test_effective_default_takes_each_set_field_and_keeps_the_rest(
    rate: float | None, burst: int | None, down: Literal["open", "closed"] | None
) -> None:
    """Every field the config center sets wins; every field it leaves out, and every field
    it has no say on (quotas), stays as the settings have it."""
    got = effective_default(BASE, ThrottleDefault(rate, burst, down))
    assert got.rate == (BASE.rate if rate is None else rate)
    assert got.burst == (BASE.burst if burst is None else burst)
    assert got.on_redis_down == (down or BASE.on_redis_down)
    assert got.quota_day == BASE.quota_day
    assert got.cold_factor == BASE.cold_factor


def test_a_version_stored_before_the_block_existed_means_no_override() -> None:
    """A stored document without ``throttle`` reads as "all from the settings"."""
    document = ConfigDocument.model_validate({"services": {}, "routes": []})
    assert document.throttle == ThrottleConfigWrite()
    assert to_snapshot(3, document).throttle_default == NO_THROTTLE_OVERRIDE
    assert document.dump()["throttle"] == {
        "default_rate_per_s": None,
        "default_burst": None,
        "on_redis_down": None,
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"default_burst": 0}, "greater than or equal to 1"),
        ({"default_burst": 1_000_001}, "less than or equal to 1000000"),
        ({"default_burst": 2.5}, "fractional part"),
        ({"default_rate_per_s": 0}, "greater than or equal to 0.001"),
        ({"default_rate_per_s": 2e6}, "less than or equal to 1000000"),
        ({"on_redis_down": "maybe"}, "'open' or 'closed'"),
        ({"burst": 3}, "Extra inputs are not permitted"),
    ],
)
def test_out_of_bounds_values_are_refused_with_the_reason(body: dict[str, Any], words: str) -> None:
    """The throttle block has the throttle service's bounds and refuses misspelt fields."""
    with pytest.raises(ValueError, match=words):
        ThrottleConfigWrite.model_validate(body)


def test_the_throttle_swaps_its_default_only_when_it_changes() -> None:
    """A snapshot with a new default rebuilds the resolved limits; one with the same default
    (a route change) keeps the cache, so no extra work follows a config change."""
    throttle = Throttle(make_redis(f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=0.1),
                        BASE)  # fmt: skip
    before = throttle.compiled("c", "svc")
    throttle.config_changed(ConfigSnapshot(version=2))
    assert throttle.compiled("c", "svc") is before
    throttle.config_changed(ConfigSnapshot(version=3, throttle_default=ThrottleDefault(burst=3)))
    after = throttle.compiled("c", "svc")
    assert after is not before
    assert "burst=3" in after.policy_header
    assert throttle.default.burst == 3 and throttle.base_default == BASE
    throttle.config_changed(ConfigSnapshot(version=4))
    assert throttle.default == BASE


def test_the_follower_tells_listeners_of_each_snapshot_it_swaps_in(tmp_path: Path) -> None:
    """Listeners hear of newer snapshots only (an older one is not applied, nor announced)."""
    store = ConfigStore(make_engine(f"sqlite:///{tmp_path / 'gateway.db'}"))
    redis = make_redis(f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=0.1)
    follower = ConfigFollower(redis, store, LiveConfig())
    heard: list[int] = []
    follower.listeners.append(lambda snapshot: heard.append(snapshot.version))
    assert follower.apply(ConfigSnapshot(version=2))
    assert not follower.apply(ConfigSnapshot(version=1))
    assert heard == [2]


# -- two live gateways ------------------------------------------------------------------------

SUFFIX = uuid.uuid4().hex[:6]
#: Fresh ids each run: the throttle's buckets in Redis are per client id.
CALLERS = [f"thr-{SUFFIX}-{n}" for n in range(5)]
CLIENTS = {
    **{cid: ["invoker"] for cid in CALLERS},
    "thr-config": ["admin:config"],
    "thr-throttle": ["admin:throttle"],
    "thr-auditor": ["auditor"],
    "thr-ready": ["invoker"],
}


@dataclass
class Pair:
    apps: list[GatewayApp]
    urls: list[str]
    service: str
    secrets: dict[str, str]
    sql_url: str
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, client_id: str) -> dict[str, str]:
        """Bearer headers for ``client_id`` (``admin``: the admin user), fetched once."""
        if client_id not in self.tokens:
            self.tokens[client_id] = (
                admin_token(self.urls[0])
                if client_id == "admin"
                else client_token(self.urls[0], client_id, self.secrets[client_id])
            )
        return {"Authorization": f"Bearer {self.tokens[client_id]}"}

    def burst_in(self, node: int) -> int:
        return self.apps[node].plane.throttle.default.burst

    def head(self) -> int:
        return ConfigStore(make_engine(self.sql_url)).head()

    def admitted(self, node: int, client_id: str, calls: int) -> list[int]:
        """The status codes of ``calls`` data-plane calls by ``client_id`` through ``node``."""
        url = f"{self.urls[node]}/v2/models/{self.service}/ready"
        headers = self.auth(client_id)
        return [httpx.get(url, headers=headers).status_code for _ in range(calls)]


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, backends: Backends, oip_upstream: OipUpstream
) -> Iterator[Pair]:
    """Two gateways on one SQL database and one Redis, with a 0.01/s, burst-50 default."""
    home, secrets, creds = new_home(tmp_path_factory, "config-throttle", CLIENTS)
    service = f"thr-{SUFFIX}"
    register(backends.registry_url, service.upper(), oip_upstream.port)
    started = start_gateways(
        backends, home, creds,
        issuer="http://gateway.throttle.test",  # shared: each takes the other's tokens
        gateway_rate_per_s=RATE_PER_S, gateway_rate_burst=BURST,
    )  # fmt: skip
    running = Pair(
        [g.app for g in started], [g.url for g in started], service, secrets,
        GatewaySettings(home=home).sql_url("gateway"),
    )  # fmt: skip
    deadline = time.monotonic() + 10
    for node in range(2):  # both gateways route to the service before any test counts calls
        while running.admitted(node, "thr-ready", 1) != [200]:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway never routed to the registered upstream")
            time.sleep(0.1)
    yield running
    for gateway in started:
        gateway.server.stop()


def test_lower_default_burst_applies_in_both_gateways_and_rolls_back(
    pair: Pair, kafka_bootstrap: str
) -> None:
    """Lowering the default burst on A throttles policy-less clients sooner on A and, within
    1 s, on B; the change is audited, and a rollback brings the settings' default back."""
    early, on_a, on_b, after_rollback = CALLERS[:4]
    assert pair.admitted(1, early, 5) == [200] * 5  # burst 50: five calls are nothing
    base = httpx.put(  # a version to roll back to, with the throttle block unset
        f"{pair.urls[0]}/admin/config/services/{pair.service}",
        json={"max_concurrent": 100},
        headers=pair.auth("thr-config"),
    )
    assert base.is_success, base.text
    before = pair.head()

    resp = httpx.put(
        f"{pair.urls[0]}/admin/config/throttle?comment=calm+down",
        json={"default_burst": 3},
        headers=pair.auth("thr-throttle"),
    )
    assert resp.status_code == 200, resp.text
    version = int(resp.headers["ETag"].strip('"'))
    assert resp.json() == {
        "default_rate_per_s": None,
        "default_burst": 3,
        "on_redis_down": None,
        "version": version,
        "effective_rate_per_s": RATE_PER_S,
        "effective_burst": 3,
        "effective_on_redis_down": "open",
    }
    assert pair.burst_in(0) == 3  # applied where it was written at once
    assert wait_until(lambda: pair.burst_in(1) == 3, timeout_s=1.0) < 1.0

    assert pair.admitted(0, on_a, 4) == [200, 200, 200, 429]
    assert pair.admitted(1, on_b, 4) == [200, 200, 200, 429]
    refused = httpx.get(f"{pair.urls[1]}/v2/models/{pair.service}/ready", headers=pair.auth(on_b))
    assert refused.status_code == 429
    assert "'client-rate'" in refused.json()["error"]  # the inference protocol's error shape
    assert pair.admitted(1, early, 1) == [429]  # five used of a bucket of three

    events = asyncio.run(audit_events(kafka_bootstrap, "config/throttle"))
    mine = [e for e in events if e["actor"].startswith("thr-")]  # other suites share the topic
    assert [(e["actor"], e["action"]) for e in mine] == [("thr-throttle", "config.throttle.put")]
    assert mine[0]["after"]["default_burst"] == 3
    assert mine[0]["before"] == {
        "default_rate_per_s": None,
        "default_burst": None,
        "on_redis_down": None,
    }

    rollback = httpx.post(
        f"{pair.urls[0]}/admin/config/rollback",
        json={"version": before, "comment": "too tight"},
        headers=pair.auth("thr-config"),
    )
    assert rollback.status_code == 200, rollback.text
    wait_until(lambda: pair.burst_in(1) == BURST, timeout_s=1.0)
    assert pair.admitted(1, after_rollback, 10) == [200] * 10
    shown = httpx.get(f"{pair.urls[1]}/admin/config/throttle", headers=pair.auth("thr-auditor"))
    assert shown.status_code == 200
    assert shown.json()["default_burst"] is None
    assert shown.json()["effective_burst"] == BURST
    assert shown.headers["ETag"] == f'"{rollback.json()["version"]}"'


def test_bad_throttle_values_are_422s_that_say_why_and_store_nothing(pair: Pair) -> None:
    """A burst of 0, a rate above 1e6 or an unknown mode is refused; no version is added."""
    before = pair.head()
    url = f"{pair.urls[0]}/admin/config/throttle"
    headers = pair.auth("thr-config")
    for body, words in [
        ({"default_burst": 0}, "default_burst: Input should be greater than or equal to 1"),
        ({"default_rate_per_s": 2e6}, "default_rate_per_s: Input should be less than or equal"),
        ({"on_redis_down": "sometimes"}, "on_redis_down: Input should be 'open' or 'closed'"),
    ]:
        resp = httpx.put(url, json=body, headers=headers)
        assert resp.status_code == 422, resp.text
        assert words in resp.json()["detail"]
    assert pair.head() == before
    assert pair.burst_in(0) == BURST


def test_roles_decide_who_reads_and_who_sets_the_default_limit(pair: Pair) -> None:
    """auditor reads but may not write; an invoker may not read; admin:config and the admin
    user write; an unchanged body stores no new version."""
    url = f"{pair.urls[0]}/admin/config/throttle"
    body = {"on_redis_down": "open", "default_rate_per_s": 5}
    assert httpx.get(url, headers=pair.auth("thr-auditor")).status_code == 200
    assert httpx.put(url, json=body, headers=pair.auth("thr-auditor")).status_code == 403
    assert httpx.get(url, headers=pair.auth(CALLERS[4])).status_code == 403
    assert httpx.put(url, json=body).status_code == 401
    first = httpx.put(url, json=body, headers=pair.auth("thr-config"))
    assert first.status_code == 200, first.text
    again = httpx.put(url, json=body, headers=pair.auth("admin"))
    assert again.status_code == 200
    assert again.headers["ETag"] == first.headers["ETag"]
    assert pair.apps[0].plane.throttle.default.rate == 5
    reset = httpx.put(url, json={}, headers=pair.auth("admin"))
    assert reset.json()["effective_rate_per_s"] == RATE_PER_S
