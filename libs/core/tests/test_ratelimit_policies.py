"""Which limits apply to a call (per-key overrides, plans, the default), and their headers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aimp_core.ratelimit.algorithm import LimitState, decide
from aimp_core.ratelimit.headers import policy_header, ratelimit_header
from aimp_core.ratelimit.limits import LimitSpec
from aimp_core.ratelimit.policies import (
    DEFAULT_NAME,
    LimitFields,
    PlanRule,
    PolicyRule,
    Resolver,
    Snapshot,
)

T0 = 1_700_000_000_000_000
DEFAULT = LimitFields(rate=1000, burst=200)


def rule(pid: str, client: str | None, service: str | None, per_client: bool = False,
         rate: float = 10) -> PolicyRule:  # fmt: skip
    return PolicyRule(pid, client, service, per_client, LimitFields(rate=rate, burst=5))


def names(resolver: Resolver, client: str, service: str) -> list[str]:
    return [a.name for a in resolver.applicable(client, service)]


def test_no_rules_means_the_default_per_client() -> None:
    """Without rules each client gets the default limit in a bucket of its own."""
    r = Resolver(Snapshot(), DEFAULT)
    [a] = r.applicable("acme", "svc")
    [b] = r.applicable("other", "svc")
    assert a.name == DEFAULT_NAME and a.spec == LimitSpec.of(1000, 200)
    assert a.state_key != b.state_key and a.lease_key is None
    assert Resolver(Snapshot(), None).applicable("acme", "svc") == ()


def test_each_slot_takes_its_most_specific_rule() -> None:
    """Client+service, client, service and global slots; overrides beat generic rules."""
    snapshot = Snapshot(
        policies=(
            rule("pair", "acme", "svc"),
            rule("each-on-svc", None, "svc", per_client=True),
            rule("acme-all", "acme", None),
            rule("each", None, None, per_client=True),
            rule("svc-shared", None, "svc"),
            rule("everything", None, None),
        ),
        plans={"gold": PlanRule("gold", LimitFields(rate=50, burst=5))},
        assignments={"beta": "gold"},
    )
    r = Resolver(snapshot, DEFAULT)
    assert names(r, "acme", "svc") == ["pair", "acme-all", "svc-shared", "everything"]
    assert names(r, "beta", "svc") == ["each-on-svc", "plan:gold", "svc-shared", "everything"]
    assert names(r, "zed", "svc") == ["each-on-svc", "each", "svc-shared", "everything"]
    assert names(r, "zed", "other") == ["each", "everything"]
    # Shared rules share one bucket; per-client ones give each client its own.
    shared = {a.name: a.state_key for a in r.applicable("zed", "svc")}
    shared_b = {a.name: a.state_key for a in r.applicable("beta", "svc")}
    assert shared["svc-shared"] == shared_b["svc-shared"]
    assert shared["each-on-svc"] != shared_b["each-on-svc"]
    assert [a.name for a in r.for_client("acme")] == ["pair", "acme-all"]


def test_a_contested_slot_goes_to_the_smallest_policy_id() -> None:
    """Two policies for one scope (the service refuses that) resolve alike everywhere."""
    r = Resolver(Snapshot(policies=(rule("b", "acme", None), rule("a", "acme", None))), None)
    assert names(r, "acme", "svc") == ["a"]


@given(
    st.lists(
        st.builds(
            rule,
            st.text(alphabet="abcdef", min_size=1, max_size=4),
            st.one_of(st.none(), st.sampled_from(["acme", "beta"])),
            st.one_of(st.none(), st.sampled_from(["svc", "other"])),
            st.booleans(),
            st.sampled_from([1.0, 2.5, 1000.0]),
        ),
        max_size=6,
        unique_by=lambda p: p.policy_id,
    )
)
def test_snapshot_round_trips_and_versions_by_content(policies: list[PolicyRule]) -> None:
    """A snapshot survives JSON; equal content has an equal version, whatever the order."""
    snap = Snapshot(policies=tuple(policies))
    again = Snapshot.from_json(snap.to_json())
    assert again.version == snap.version
    assert sorted(again.policies, key=lambda p: p.policy_id) == sorted(
        policies, key=lambda p: p.policy_id
    )
    assert Snapshot(policies=tuple(reversed(policies))).version == snap.version


def test_ratelimit_headers() -> None:
    """RateLimit-Policy states each quota per window; RateLimit what is left and when."""
    default = LimitSpec.of(1000, 200)
    slow = LimitSpec.of(0.5, 3, quota_day=100, quota_month=1000)
    named = [("client-rate", default), ("p1", slow)]
    assert policy_header(named, T0) == (
        '"client-rate";q=1000;w=1;burst=200, "p1";q=1;w=2;burst=3, '
        '"p1/day";q=100;w=86400, "p1/month";q=1000;w=2592000'  # November: 30 days
    )
    d = decide([default, slow], [LimitState(), LimitState()], T0)
    assert ratelimit_header(named, d.numbers, T0) == (
        # 2023-11-14 22:13:20 UTC: 6400 s to midnight, 1388800 s to December.
        '"client-rate";r=199;t=0, "p1";r=2;t=0, "p1/day";r=99;t=6400, "p1/month";r=999;t=1388800'
    )
