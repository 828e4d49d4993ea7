"""The revision split: weighted draws, pins, unknown pins and fallbacks (pure)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aimp_core.registry_client import META_REVISION, Instance
from aimp_gateway.policy import RevisionWeight, ServicePolicy
from aimp_gateway.revisions import UnknownRevision, choose_revision, pick_revision


def _inst(n: int, revision: str = "") -> Instance:
    meta = {META_REVISION: revision} if revision else {}
    return Instance(f"iris-{n}", "IRIS", "127.0.0.1", 20000 + n, "UP", meta)


STABLE = (_inst(1, "v1"), _inst(2, "v1"), _inst(3, "v1"))
CANARY = (_inst(4, "v2"),)
BOTH = STABLE + CANARY


def _split(**weights: int) -> ServicePolicy:
    return ServicePolicy(revisions=tuple(RevisionWeight(r, w) for r, w in weights.items()))


def test_canary_at_ten_percent_gets_ten_percent_of_ten_thousand() -> None:
    """A 90/10 split over 10,000 seeded draws sends 10 % +- 1.5 % to the canary."""
    rng = random.Random(20240611)
    policy = _split(v1=90, v2=10)
    counts = Counter(choose_revision(BOTH, policy, None, rng.random())[0] for _ in range(10_000))
    assert set(counts) == {"v1", "v2"}
    assert 850 <= counts["v2"] <= 1150


@given(w1=st.integers(0, 100), w2=st.integers(0, 100), draw=st.floats(0, 1, exclude_max=True))
def test_chosen_instances_are_all_of_the_chosen_revision(w1: int, w2: int, draw: float) -> None:
    """Whatever the weights and draw, the instances returned carry the revision returned."""
    revision, instances = choose_revision(BOTH, _split(v1=w1, v2=w2), None, draw)
    assert instances
    if revision:
        assert {i.metadata[META_REVISION] for i in instances} == {revision}
        assert {"v1": w1, "v2": w2}[revision] > 0
    else:
        assert w1 == w2 == 0 and instances == BOTH


def test_draw_boundaries_follow_the_weights() -> None:
    """Draws below the first weight's share pick it, the rest pick the next."""
    policy = _split(v1=90, v2=10)
    assert choose_revision(BOTH, policy, None, 0.0)[0] == "v1"
    assert choose_revision(BOTH, policy, None, 0.8999)[0] == "v1"
    assert choose_revision(BOTH, policy, None, 0.9)[0] == "v2"
    assert choose_revision(BOTH, policy, None, 0.99999)[0] == "v2"


def test_pin_header_wins_even_at_weight_zero() -> None:
    """A pinned known revision is used whatever the draw, even the idle blue-green colour."""
    policy = _split(v1=100, v2=0)
    for draw in (0.0, 0.5, 0.99):
        assert choose_revision(BOTH, policy, "v2", draw) == ("v2", CANARY)
    assert choose_revision(BOTH, ServicePolicy(), "v1", 0.5) == ("v1", STABLE)


def test_pin_to_a_known_revision_without_instances_gets_none() -> None:
    """Pinned to a revision that exists but has nothing routable: no instances (503), no swap."""
    assert choose_revision(STABLE, _split(v1=90, v2=10), "v2", 0.5) == ("v2", ())
    assert choose_revision(STABLE, ServicePolicy(), "v3", 0.5, known={"v3"}) == ("v3", ())


def test_unknown_pin_is_an_error_listing_known_revisions() -> None:
    """A pin naming no known revision raises a 404 naming the header and the known ones."""
    with pytest.raises(UnknownRevision) as err:
        choose_revision(BOTH, _split(v1=90, v2=10, v3=0), "v9", 0.5, service="iris")
    assert err.value.status == 404
    assert err.value.known == ("v1", "v2", "v3")
    assert "'v9'" in err.value.detail and "'v1', 'v2', 'v3'" in err.value.detail
    assert "x-aimp-revision" in err.value.detail


def test_weighted_revision_without_instances_falls_back_to_the_others() -> None:
    """A canary with weight but no routable instance sends its share to the rest."""
    policy = _split(v1=50, v2=50)
    for draw in (0.0, 0.6, 0.99):
        assert choose_revision(STABLE, policy, None, draw) == ("v1", STABLE)


def test_nothing_weighted_routable_means_every_instance() -> None:
    """If no weighted revision has an instance, every routable instance is a candidate."""
    others = (_inst(7, "v7"), _inst(8))
    assert choose_revision(others, _split(v1=90, v2=10), None, 0.3) == ("", others)


def test_no_split_means_every_instance() -> None:
    """An empty revision list sends calls to every instance whatever their revision."""
    assert choose_revision(BOTH, ServicePolicy(), None, 0.7) == ("", BOTH)
    assert choose_revision(BOTH, ServicePolicy(), "", 0.7) == ("", BOTH)


def test_pick_revision_uses_precomputed_sets() -> None:
    """The router's entry point decides on revision names alone."""
    policy = _split(v1=90, v2=10)
    assert pick_revision({"v1", "v2"}, policy, None, 0.95, known=(), service="iris") == "v2"
    assert pick_revision({"v1"}, policy, None, 0.95, known=(), service="iris") == "v1"
    assert pick_revision(set(), policy, "v2", 0.1, known=(), service="iris") == "v2"
